/**
 * A lean path for the unary calls a gateway makes on every request (Envoy's Check), served on
 * grpc-js's own listener: the HTTP/2 stream is read and answered here, without grpc-js's per-call
 * machinery (an intercepting call object, metadata objects, a stream decoder, a deadline timer,
 * status objects). Measured on Check with a fixed answer, that machinery was about a third of
 * the CPU of a call (60–66 µs against 43 µs per call for the same work on the bare stream).
 *
 * Everything else stays grpc-js's: other methods, the connection (TLS, keepalive, shutdown), and
 * any call of a fast method that this path does not handle — a compressed request (grpc-js
 * decompresses) or an unexpected content type (grpc-js answers the error). What it does answer
 * follows the gRPC HTTP/2 protocol as grpc-js answers it: the same response headers, the message
 * in one length-prefixed frame, `grpc-status` in the trailers; a request that is not exactly one
 * message within the size limit gets grpc-js's status codes (INTERNAL, RESOURCE_EXHAUSTED).
 *
 * The hook is grpc-js's `_streamHandler`, the method its listener calls for every new stream (it
 * is not public API). {@link serveUnaryDirectly} fails at start-up if that method is missing, so
 * a grpc-js upgrade that changes it breaks loudly, and the gRPC tests run every call through it.
 */
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { principalOfSocket } from './peer.js';

/** A unary method answered on the lean path. */
export interface DirectUnaryMethod {
  /** `/package.Service/Method`. */
  readonly path: string;
  /**
   * The answer's protobuf bytes for the request's protobuf bytes and the connection's verified
   * mTLS identity; it must never reject (a failure is answered as the method's own deny).
   */
  answer(message: Buffer, peerPrincipal: string | undefined): Promise<Buffer>;
}

/** gRPC status codes this path answers with itself. */
const INTERNAL = 13;
const RESOURCE_EXHAUSTED = 8;

/** The response headers grpc-js sends, so a client sees the same answer whichever path served it. */
const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
} as const;

const OK_TRAILERS = { 'grpc-status': '0', 'grpc-message': '' } as const;

type StreamHandler = (this: grpc.Server, extraInterceptors: unknown, stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

/** The grpc-js internals this module relies on. */
interface GrpcServerInternals {
  _streamHandler?: StreamHandler;
  onStreamOpened?: (stream: ServerHttp2Stream) => void;
}

/**
 * Writes to a stream the caller may have left (a deadline, a reset, the connection gone) while
 * the answer was being made: a stream that can no longer take it is left alone, and a write that
 * throws all the same is dropped, never let out of the promise chain to end the process.
 */
function writeTo(stream: ServerHttp2Stream, write: () => void): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  try {
    write();
  } catch {
    stream.destroy();
  }
}

/** Answers a stream with a status and no message (a trailers-only response), as grpc-js does. */
function answerStatus(stream: ServerHttp2Stream, code: number, details: string): void {
  writeTo(stream, () =>
    stream.respond({ ':status': 200, 'content-type': 'application/grpc+proto', 'grpc-status': String(code), 'grpc-message': encodeURI(details) }, { endStream: true }),
  );
}

function answerMessage(stream: ServerHttp2Stream, message: Buffer): void {
  writeTo(stream, () => {
    const frame = Buffer.allocUnsafe(5 + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => {
      try {
        stream.sendTrailers(OK_TRAILERS);
      } catch {
        stream.destroy();
      }
    });
    stream.end(frame);
  });
}

function peerPrincipal(stream: ServerHttp2Stream): string | undefined {
  const socket = stream.session?.socket as Socket | undefined;
  return socket ? principalOfSocket(socket) : undefined;
}

/** Reads the one message of a unary call, then answers it. */
function serve(stream: ServerHttp2Stream, method: DirectUnaryMethod, maxMessageBytes: number): void {
  // An error is followed by close; there is nothing to answer on a broken stream.
  stream.once('error', () => undefined);
  const chunks: Buffer[] = [];
  let received = 0;
  let refused = false;
  stream.on('data', (chunk: Buffer) => {
    if (refused) return;
    received += chunk.length;
    if (received > maxMessageBytes + 5) {
      refused = true;
      chunks.length = 0;
      answerStatus(stream, RESOURCE_EXHAUSTED, `Received message larger than max (${received - 5} vs. ${maxMessageBytes})`);
      return;
    }
    chunks.push(chunk);
  });
  stream.once('end', () => {
    if (refused) return;
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    if (body.length < 5) {
      answerStatus(stream, INTERNAL, 'a unary call carries exactly one message; none was received');
      return;
    }
    if (body[0] !== 0) {
      answerStatus(stream, INTERNAL, 'the message is flagged compressed, but the call names no compression');
      return;
    }
    const length = body.readUInt32BE(1);
    if (body.length !== 5 + length) {
      answerStatus(stream, INTERNAL, 'a unary call carries exactly one message');
      return;
    }
    method.answer(body.subarray(5), peerPrincipal(stream)).then(
      (answer) => answerMessage(stream, answer),
      () => answerStatus(stream, INTERNAL, 'internal error'),
    );
  });
}

/**
 * Routes new streams for `methods` to the lean path, and every other stream to grpc-js as before.
 * Call before the server binds (grpc-js attaches its handler when it listens).
 */
export function serveUnaryDirectly(server: grpc.Server, methods: readonly DirectUnaryMethod[], maxMessageBytes: number): void {
  const internals = server as unknown as GrpcServerInternals;
  const grpcHandler = internals._streamHandler;
  if (typeof grpcHandler !== 'function') throw new Error('this @grpc/grpc-js has no Server._streamHandler; the direct unary path (src/transport/grpc-unary.ts) needs updating');
  const byPath = new Map(methods.map((method) => [method.path, method]));
  const handler: StreamHandler = function (this: grpc.Server, extraInterceptors, stream, headers) {
    const method = byPath.get(headers[':path'] ?? '');
    const encoding = headers['grpc-encoding'];
    const direct = method !== undefined && (encoding === undefined || encoding === 'identity') && (headers['content-type'] ?? '').startsWith('application/grpc');
    if (!direct) {
      grpcHandler.call(this, extraInterceptors, stream, headers);
      return;
    }
    // grpc-js counts open streams for its idle-connection timeout.
    internals.onStreamOpened?.call(this, stream);
    serve(stream, method, maxMessageBytes);
  };
  internals._streamHandler = handler;
}
