/**
 * Envoy's side of ext_proc (`envoy.service.ext_proc.v3.ExternalProcessor/Process`) for the
 * benchmark, played over grpc-js as Envoy 1.40 plays it with examples/envoy/envoy-ext-proc.yaml:
 * one stream per HTTP request; the filter's own processing_mode sends only the request headers,
 * and every later message is sent only when a `mode_override` in an answer to a headers message
 * asked for it (allow_mode_override: true), replacing the mode as a whole, as Envoy does.
 * Headers travel in `raw_value`, pseudo-headers first, with the `x-forwarded-proto` and
 * `x-request-id` Envoy's connection manager adds before its filters run; every message carries
 * an empty `metadata_context` and the first an empty `protocol_config`, as Envoy's do. Once it
 * has its last answer (or a deny, an ImmediateResponse) Envoy 1.40 resets the stream rather
 * than half-closing it (recorded through a proxy); the driver does either ({@link StreamClose}).
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { driveLoop, type Driven } from './drive.js';

/** An ExternalProcessor client as grpc-js builds it from the loaded services. */
export type ProcessorClient = grpc.Client & { Process: () => grpc.ClientDuplexStream<object, ProcessingAnswer> };

/** A ProcessingResponse as the client decodes it (oneof member name, enum names). */
interface ProcessingAnswer {
  response?: string;
  modeOverride?: { responseHeaderMode?: string; requestBodyMode?: string; responseBodyMode?: string };
}

/** One HTTP request through Envoy, and the upstream's answer to it. */
export interface Exchange {
  readonly method: string;
  readonly path: string;
  /** Request headers besides the pseudo-headers and what Envoy adds (authorization, content-type...). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly responseStatus: number;
  readonly responseHeaders: Readonly<Record<string, string>>;
  readonly responseBody: string;
}

/**
 * How a stream ends after its last answer: `reset` (RST_STREAM, as Envoy 1.40 does without
 * ext_proc_graceful_grpc_close) or `half-close` (END_STREAM, then the server's OK: Envoy with it). Node's HTTP/2 server (nghttp2) allows a burst
 * of 1000 incoming resets per connection, then 33/s, and beyond that ends the connection with
 * GOAWAY INTERNAL_ERROR: under sustained load `reset` fails the run, as it fails the requests
 * in flight through a real Envoy.
 */
export type StreamClose = 'reset' | 'half-close';

/** What the ext_proc filter sends, as Envoy tracks it per stream. */
interface Mode {
  responseHeaders: boolean;
  requestBody: string;
  responseBody: string;
}

/** examples/envoy/envoy-ext-proc.yaml's processing_mode: request headers only. */
const CONFIGURED: Mode = { responseHeaders: false, requestBody: 'NONE', responseBody: 'NONE' };

function headerMap(entries: Readonly<Record<string, string>>): object {
  return { headers: Object.entries(entries).map(([key, value]) => ({ key, rawValue: Buffer.from(value, 'utf8') })) };
}

/** The request headers message: pseudo-headers, the request's own, then what the connection manager added. */
function requestHeadersMessage(exchange: Exchange): object {
  const headers: Record<string, string> = {
    ':authority': 'llm.internal',
    ':path': exchange.path,
    ':method': exchange.method,
    ':scheme': 'http',
    ...exchange.headers,
    ...(exchange.body !== undefined ? { 'content-length': String(Buffer.byteLength(exchange.body)) } : {}),
    'x-forwarded-proto': 'http',
    'x-request-id': randomUUID(),
  };
  return { requestHeaders: { headers: headerMap(headers), endOfStream: exchange.body === undefined }, metadataContext: {}, protocolConfig: {} };
}

function responseHeadersMessage(exchange: Exchange): object {
  const headers: Record<string, string> = {
    ':status': String(exchange.responseStatus),
    ...exchange.responseHeaders,
    'content-length': String(Buffer.byteLength(exchange.responseBody)),
    'x-envoy-upstream-service-time': '1',
  };
  return { responseHeaders: { headers: headerMap(headers), endOfStream: exchange.responseBody === '' }, metadataContext: {} };
}

/** A mode_override replaces the mode: an unset header mode is DEFAULT (sent), an unset body mode NONE. */
function overridden(answer: ProcessingAnswer): Mode | undefined {
  const override = answer.modeOverride;
  if (!override) return undefined;
  return { responseHeaders: override.responseHeaderMode !== 'SKIP', requestBody: override.requestBodyMode ?? 'NONE', responseBody: override.responseBodyMode ?? 'NONE' };
}

/**
 * The next message Envoy sends once `answered` was answered, and the answer it then waits for;
 * undefined when the request is done. Bodies are sent whole in one message (BUFFERED; a STREAMED
 * body this small is one chunk too).
 */
function nextStep(answered: string, exchange: Exchange, mode: Mode): { message: object; expect: string } | undefined {
  if (answered === 'requestHeaders' && exchange.body !== undefined && mode.requestBody !== 'NONE') {
    return { message: { requestBody: { body: Buffer.from(exchange.body, 'utf8'), endOfStream: true }, metadataContext: {} }, expect: 'requestBody' };
  }
  if ((answered === 'requestHeaders' || answered === 'requestBody') && mode.responseHeaders) {
    return { message: responseHeadersMessage(exchange), expect: 'responseHeaders' };
  }
  if (answered !== 'responseBody' && mode.responseBody !== 'NONE' && exchange.responseBody !== '') {
    return { message: { responseBody: { body: Buffer.from(exchange.responseBody, 'utf8'), endOfStream: true }, metadataContext: {} }, expect: 'responseBody' };
  }
  return undefined;
}

/** The messages Envoy sent over all streams (each is answered once), for the printout. */
export interface StreamTally {
  messages: number;
}

/**
 * One HTTP request over one Process stream. `answered` resolves when Envoy would have its last
 * answer (allowed, or denied by an ImmediateResponse), as the stream is closed; `closed` settles
 * once the stream is over, rejecting when it failed before that (a gRPC error from the server).
 */
export function processExchange(client: ProcessorClient, exchange: Exchange, tally: StreamTally, close: StreamClose = 'reset'): { answered: Promise<{ allowed: boolean }>; closed: Promise<void> } {
  const call = client.Process();
  let mode = CONFIGURED;
  let expect = 'requestHeaders';
  let finishedWith: ((allowed: boolean) => void) | undefined;
  let failWith: ((error: Error) => void) | undefined;
  const answered = new Promise<{ allowed: boolean }>((resolve, reject) => {
    finishedWith = (allowed) => resolve({ allowed });
    failWith = reject;
  });
  const fail = (error: Error): void => {
    failWith?.(error);
    call.cancel();
  };
  const finish = (allowed: boolean): void => {
    finishedWith?.(allowed);
    finishedWith = undefined;
    if (close === 'reset') call.cancel();
    else call.end();
  };
  const closed = new Promise<void>((resolve, reject) => {
    call.on('status', (status: grpc.StatusObject) => {
      if (finishedWith === undefined && (status.code === grpc.status.OK || status.code === grpc.status.CANCELLED)) return resolve();
      const error = new Error(`ext_proc stream ended before its last answer (awaiting ${expect}) with gRPC status ${status.code}: ${status.details}`);
      failWith?.(error);
      reject(error);
    });
  });
  call.on('error', (error: Error) => failWith?.(error));
  const send = (message: object): void => {
    tally.messages++;
    call.write(message);
  };
  call.on('data', (answer: ProcessingAnswer) => {
    if (finishedWith === undefined) return fail(new Error(`ext_proc answer after the last one: ${answer.response}`));
    if (answer.response === 'immediateResponse') return finish(false);
    if (answer.response !== expect) return fail(new Error(`ext_proc answered ${answer.response} where Envoy awaits ${expect}`));
    // Envoy honours mode_override only in answers to headers (ext_proc filter, allow_mode_override).
    if (expect === 'requestHeaders' || expect === 'responseHeaders') mode = overridden(answer) ?? mode;
    const step = nextStep(expect, exchange, mode);
    if (!step) return finish(true);
    expect = step.expect;
    send(step.message);
  });
  send(requestHeadersMessage(exchange));
  return { answered, closed };
}

/**
 * Closed-loop ext_proc load: each caller plays one HTTP request after another from `exchanges`,
 * over the clients round-robin. A stream that fails, or ends with a gRPC error after its last
 * answer, fails the run (after the loop, so the error is not lost in a closing stream).
 */
export async function driveExchanges(
  clients: readonly ProcessorClient[],
  exchanges: readonly Exchange[],
  seconds: number,
  concurrency: number,
  tally: StreamTally,
  close: StreamClose,
): Promise<Driven> {
  const closing = new Set<Promise<void>>();
  let failure: unknown;
  const driven = await driveLoop(seconds, concurrency, (slot, sequence) => {
    const { answered, closed } = processExchange(clients[slot % clients.length]!, exchanges[sequence % exchanges.length]!, tally, close);
    const tracked = closed.catch((error: unknown) => void (failure ??= error)).finally(() => closing.delete(tracked));
    closing.add(tracked);
    return answered;
  });
  await Promise.all(closing);
  if (failure !== undefined) throw failure instanceof Error ? failure : new Error(String(failure));
  return driven;
}
