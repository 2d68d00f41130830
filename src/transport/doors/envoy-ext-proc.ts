/**
 * Envoy ext_proc v3 (`envoy.service.ext_proc.v3.ExternalProcessor/Process`): one bidirectional
 * stream per HTTP request, mapped onto the decision pipeline on the way in and the response
 * pipeline on the way out.
 *
 * - Request headers: when the request has a body, Signalbox asks for it (`mode_override`
 *   request_body_mode BUFFERED, honoured when the filter sets `allow_mode_override`) and decides
 *   on the body; otherwise it decides on the headers. A deny is an ImmediateResponse with the
 *   status, headers and body Check would answer with; an allow sets and removes headers as Check
 *   does, and replaces the body when the policy redacted or rerouted it.
 * - Response headers: a JSON answer is asked for whole (BUFFERED), an event stream chunk by
 *   chunk (STREAMED); anything else passes.
 * - Response body: judged, redacted, filtered (MCP tools/list) and settled by
 *   decide/answer.ts; a blocked buffered answer becomes an ImmediateResponse.
 *
 * Like Check, every call is answered: a failure is a deny (request side) or a blocked answer
 * (response side), never a gRPC error that `failure_mode_allow` could turn into a pass.
 */
import type { Logger } from '../../core/log.js';
import { describeCause } from '../../core/errors.js';
import type { DecisionPipeline } from '../../decide/decide.js';
import type { Decision, DecisionRequest } from '../../decide/decision.js';
import type { AnswerPipeline, AnswerStream } from '../../decide/answer.js';
import { toStruct } from './struct.js';
import {
  commonResponse,
  immediateResponse,
  modeOverride,
  readHeaders,
  type BodySendMode,
  type WireProcessingRequest,
} from './ext-proc-wire.js';

/** This door's name in `input.door.name`, the audit trail and metrics. */
export const EXT_PROC_DOOR = 'envoy.ext_proc';

/** The stream as grpc-js hands it to a bidirectional handler (the parts used here). */
export interface ProcessStream {
  on(event: 'data', listener: (message: WireProcessingRequest) => void): unknown;
  on(event: 'end' | 'cancelled' | 'error' | 'close', listener: () => void): unknown;
  write(message: object): boolean;
  end(): void;
}

/** What the door works with. */
export interface ExtProcOptions {
  readonly pipeline: DecisionPipeline;
  readonly answers: AnswerPipeline;
  readonly logger: Logger;
  /**
   * The most request-body bytes gathered for one decision (`server.max_request_bytes`): a filter
   * configured to stream request bodies sends them in pieces, each within gRPC's message limit.
   */
  readonly maxBodyBytes: number;
  /** The verified mTLS identity of the stream's connection (Envoy's), for `input.door.peer_principal`. */
  readonly peerPrincipal?: string | undefined;
}

/** Headers that are Envoy's pseudo-headers (`:path`...), kept out of `input.attributes.request.http.headers`. */
function plainHeaders(headers: Record<string, string>): Record<string, string> {
  const plain: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (!name.startsWith(':')) plain[name] = value;
  return plain;
}

/**
 * The request as a DecisionRequest. ext_proc carries no AttributeContext, so `input.attributes`
 * is built with the same names Check's has (request.http.{method, path, host, scheme, headers,
 * body}), so one policy serves both doors.
 */
function decisionRequest(headers: Record<string, string>, body: Buffer): DecisionRequest {
  const plain = plainHeaders(headers);
  const host = headers[':authority'] ?? plain.host ?? '';
  if (host !== '') plain.host = host;
  const path = headers[':path'] ?? '';
  const http: Record<string, unknown> = {
    method: headers[':method'] ?? '',
    path,
    host,
    scheme: headers[':scheme'] ?? '',
    headers: plain,
    ...(body.length > 0 ? { body: body.toString('utf8'), size: body.length } : {}),
  };
  return {
    door: EXT_PROC_DOOR,
    attributes: { request: { time: requestTime(), http } },
    path,
    headers: plain,
    body,
    canRewriteBody: true,
  };
}

/** Now as Check's `request.time` reads: a protobuf Timestamp in JSON, `{seconds, nanos}`. */
function requestTime(): { seconds: number; nanos: number } {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** `:path` with the policy's query changes applied (ext_proc sets the query through `:path`). */
function rewrittenPath(path: string, decision: Decision): string | undefined {
  if (decision.queryParametersToSet.length === 0 && decision.queryParametersToRemove.length === 0) return undefined;
  const url = new URL(path, 'http://ext-proc.invalid');
  for (const name of decision.queryParametersToRemove) url.searchParams.delete(name);
  for (const { key, value } of decision.queryParametersToSet) url.searchParams.set(key, value);
  return `${url.pathname}${url.search}`;
}

/** Serves one ext_proc stream (one HTTP request through Envoy). */
export function serveProcessStream(stream: ProcessStream, options: ExtProcOptions): void {
  let requestHeaders: Record<string, string> = {};
  let answer: AnswerStream | undefined;
  const pendingBody: Buffer[] = [];
  let pendingBytes = 0;
  let requestDecided = false;
  let finished = false;
  // Messages are handled one at a time, in order: each answer depends on the ones before.
  let queue: Promise<void> = Promise.resolve();

  const send = (message: object): void => {
    if (!finished) stream.write(message);
  };
  let ended = false;
  const endStream = (): void => {
    if (ended) return;
    ended = true;
    stream.end();
  };
  /**
   * Sends the last answer the exchange needs and closes the stream from this side. Envoy ends
   * an ext_proc stream it closes itself with RST_STREAM, and Node's HTTP/2 server (nghttp2's
   * rapid-reset guard: a burst of 1,000, then 33 a second) drops a connection that receives
   * more: under load that cut Envoy's connection and failed requests in flight. A stream the
   * processor has closed is finished for Envoy too ("processing complete"), and is not reset.
   */
  const sendLast = (message: object): void => {
    send(message);
    finished = true;
    endStream();
  };

  const decideRequest = async (phase: 'requestHeaders' | 'requestBody', body: Buffer): Promise<void> => {
    requestDecided = true;
    let decision: Decision;
    let started: AnswerStream | undefined;
    try {
      const request = decisionRequest(requestHeaders, body);
      const trace = await options.pipeline.explain(options.peerPrincipal ? { ...request, peerPrincipal: options.peerPrincipal } : request);
      decision = trace.decision;
      if (decision.allowed) started = options.answers.begin(trace);
    } catch (error) {
      // explain() never rejects by contract; this is the belt to its braces.
      decision = options.pipeline.rejectUnreadable(EXT_PROC_DOOR, error);
    }
    const dynamicMetadata = toStruct(decision.dynamicMetadata);
    if (!decision.allowed) {
      sendLast({ ...immediateResponse(decision.httpStatus, decision.headers, decision.body, `signalbox: ${decision.reasons.join(',') || 'denied'}`), dynamicMetadata });
      return;
    }
    const set = [...decision.headers];
    const path = rewrittenPath(requestHeaders[':path'] ?? '', decision);
    if (path !== undefined) set.push({ key: ':path', value: path });
    const newBody = decision.upstreamBody !== undefined ? Buffer.from(decision.upstreamBody, 'utf8') : undefined;
    if (newBody !== undefined) set.push({ key: 'content-length', value: String(newBody.length) });
    answer = started;
    const reply = {
      [phase]: { response: commonResponse({ set, remove: decision.requestHeadersToRemove, ...(newBody !== undefined ? { body: newBody } : {}) }) },
      ...(phase === 'requestHeaders' ? { modeOverride: modeOverride({ responseHeaders: answer ? 'SEND' : 'SKIP' }) } : {}),
      dynamicMetadata,
    };
    // Decided on the headers with nothing to read of the answer: nothing more will come.
    if (phase === 'requestHeaders' && !answer) sendLast(reply);
    else send(reply);
  };

  const onResponseHeaders = (message: WireProcessingRequest): void => {
    const responseHeaders = readHeaders(message.responseHeaders);
    const responseStatus = Number(responseHeaders[':status'] ?? 0);
    if (!answer) {
      sendLast({ responseHeaders: { response: commonResponse() }, modeOverride: modeOverride({ responseHeaders: 'SEND', responseBody: 'NONE' }) });
      return;
    }
    const plan = answer.headers(responseStatus, plainHeaders(responseHeaders), message.responseHeaders?.endOfStream === true);
    const mode: BodySendMode = plan.body;
    const reply = {
      responseHeaders: { response: commonResponse({ set: plan.set, remove: plan.remove }) },
      modeOverride: modeOverride({ responseHeaders: 'SEND', responseBody: mode }),
    };
    if (mode === 'NONE') {
      answer = undefined;
      sendLast(reply);
    } else {
      send(reply);
    }
  };

  const onResponseBody = async (message: WireProcessingRequest): Promise<void> => {
    const chunk = message.responseBody?.body ?? Buffer.alloc(0);
    const endOfStream = message.responseBody?.endOfStream === true;
    if (!answer) {
      send({ responseBody: { response: commonResponse() } });
      return;
    }
    const step = await answer.body(chunk, endOfStream);
    // A stream blocked mid-way keeps its answer to the end: the answer swallows every later
    // chunk (the upstream keeps writing after the error event), which would otherwise pass as is.
    if (endOfStream || (step.kind === 'blocked' && step.immediate)) answer = undefined;
    if (step.kind === 'blocked' && step.immediate) {
      sendLast(immediateResponse(step.immediate.status, step.immediate.headers, step.immediate.body, `signalbox: ${step.reasons.join(',')}`));
      return;
    }
    const set = step.kind === 'pass' ? step.set : undefined;
    const reply = { responseBody: { response: commonResponse({ ...(step.body !== undefined ? { body: step.body } : {}), ...(set ? { set } : {}) }) } };
    if (endOfStream) sendLast(reply);
    else send(reply);
  };

  const handle = async (message: WireProcessingRequest): Promise<void> => {
    switch (message.request) {
      case 'requestHeaders':
        requestHeaders = readHeaders(message.requestHeaders);
        if (message.requestHeaders?.endOfStream === true) {
          await decideRequest('requestHeaders', Buffer.alloc(0));
        } else {
          // Decide on the whole request: ask for the body, and for the response headers.
          send({ requestHeaders: { response: commonResponse() }, modeOverride: modeOverride({ requestBody: 'BUFFERED', responseHeaders: 'SEND' }) });
        }
        return;
      case 'requestBody':
        if (requestDecided) {
          // The rest of a body streamed past the limit: the decision is made.
          send({ requestBody: { response: commonResponse() } });
          return;
        }
        // BUFFERED: the whole body in one message. A filter configured for STREAMED request
        // bodies is answered chunk by chunk without a decision until the last.
        pendingBody.push(message.requestBody?.body ?? Buffer.alloc(0));
        pendingBytes += message.requestBody?.body?.length ?? 0;
        if (pendingBytes > options.maxBodyBytes) {
          // Over the limit the body is not gathered further: the request is decided on what
          // arrived, marked cut short, which the policy refuses (413, content.truncated).
          requestHeaders = { ...requestHeaders, 'content-length': String(Math.max(pendingBytes + 1, Number(requestHeaders['content-length'] ?? 0))) };
          await decideRequest('requestBody', Buffer.concat(pendingBody).subarray(0, options.maxBodyBytes));
          pendingBody.length = 0;
          return;
        }
        if (message.requestBody?.endOfStream !== true) {
          send({ requestBody: { response: commonResponse() } });
          return;
        }
        await decideRequest('requestBody', Buffer.concat(pendingBody));
        return;
      case 'responseHeaders':
        onResponseHeaders(message);
        return;
      case 'responseBody':
        await onResponseBody(message);
        return;
      case 'requestTrailers':
        send({ requestTrailers: {} });
        return;
      case 'responseTrailers':
        send({ responseTrailers: {} });
        return;
      default:
        options.logger.warn({ code: 'request_malformed', door: EXT_PROC_DOOR }, 'ext_proc message with no request member');
    }
  };
  stream.on('data', (message) => {
    queue = queue.then(() => handle(message)).catch((error: unknown) => {
      options.logger.error({ code: 'internal_error', door: EXT_PROC_DOOR, cause: describeCause(error) }, 'ext_proc message failed');
      // Fail closed: whatever phase this was, the client gets an error rather than the content.
      sendLast(immediateResponse(500, [{ key: 'content-type', value: 'application/json' }], JSON.stringify({ error: { code: 'internal_error', message: 'internal error' } }), 'signalbox: internal_error'));
      answer = undefined;
    });
  });
  const close = (): void => {
    if (finished) return;
    queue = queue.then(() => {
      finished = true;
      // The client or Envoy went away mid-answer: settle what was delivered.
      answer?.abort();
      answer = undefined;
    });
  };
  stream.on('end', () => {
    close();
    void queue.then(endStream);
  });
  stream.on('cancelled', close);
  stream.on('error', close);
}
