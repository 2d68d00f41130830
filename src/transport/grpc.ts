/**
 * The gRPC server: Envoy's Authorization/Check and ExternalProcessor/Process,
 * signalbox.v1.DecisionService/Decide and grpc.health.v1.Health. Handlers only map wire ↔ pipeline. A decision call is always answered
 * with a response (a deny when anything fails), never a gRPC error: Envoy's failure_mode_allow
 * would turn an error into an allow.
 */
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ENVOY_DOOR, fromCheckRequest, toCheckResponse } from './doors/envoy-grpc.js';
import { encodeCheckResponse, type CheckResponseMessage } from './doors/check-response-wire.js';
import { serveProcessStream, type ProcessStream } from './doors/envoy-ext-proc.js';
import type { AnswerPipeline } from '../decide/answer.js';
import {
  SIGNALBOX_DOOR,
  fromDecideRequest,
  fromReportMessage,
  toDecideResponse,
  toReportResponse,
  toSpendResponse,
  type ReportMessage,
} from './doors/signalbox-grpc.js';
import { SignalboxError, answerFor, describeCause } from '../core/errors.js';
import type { ReportService } from '../enforce/report.js';
import type { ErrorCode } from '../core/codes.js';
import type { Logger } from '../core/log.js';
import type { DecisionPipeline } from '../decide/decide.js';
import type { Decision, DecisionRequest } from '../decide/decision.js';
import { loadServices } from './protos.js';
import type { AdminGuard } from './admin-auth.js';
import { principalOfPeer, withPeerPrincipal } from './peer.js';
import { addReflection } from './reflection.js';
import { serveUnaryDirectly, type DirectUnaryMethod } from './grpc-unary.js';

/** What grpc.health.v1 reports: serving while both listeners are bound and nothing the service needs is missing. */
export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/**
 * grpc.health.v1 and `/ready` state; "" is the whole server, the others are the served service
 * names. Serving needs two things: the listeners are up ({@link set}, by the app), and no
 * dependency is missing ({@link setProblems}, by the readiness checks in src/app/readiness.ts).
 * Watchers hear only changes.
 */
export class HealthState {
  private listening = false;
  private problems: readonly ErrorCode[] = [];
  private reported: ServingStatus = 'NOT_SERVING';
  private readonly watchers = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  static readonly SERVICES = ['', 'envoy.service.auth.v3.Authorization', 'envoy.service.ext_proc.v3.ExternalProcessor', 'signalbox.v1.DecisionService'];

  get current(): ServingStatus {
    return this.listening && this.problems.length === 0 ? 'SERVING' : 'NOT_SERVING';
  }

  /** Why the server is not serving (codes from src/core/codes.ts); empty while it serves. */
  get reasons(): readonly ErrorCode[] {
    return this.listening ? this.problems : ['server_not_serving', ...this.problems];
  }

  /** Marks the listeners up (SERVING) or going down (NOT_SERVING). */
  set(status: ServingStatus): void {
    this.listening = status === 'SERVING';
    this.publish();
  }

  /** Replaces the dependencies found missing (an empty list: none). */
  setProblems(codes: readonly ErrorCode[]): void {
    this.problems = [...codes];
    this.publish();
  }

  watch(call: grpc.ServerWritableStream<unknown, unknown>): void {
    this.watchers.add(call);
    call.write({ status: this.current });
    call.on('cancelled', () => this.watchers.delete(call));
    call.on('close', () => this.watchers.delete(call));
  }

  endWatches(): void {
    for (const watcher of this.watchers) watcher.end();
    this.watchers.clear();
  }

  private publish(): void {
    const status = this.current;
    if (status === this.reported) return;
    this.reported = status;
    for (const watcher of this.watchers) watcher.write({ status });
  }
}

/** What the gRPC server serves with; `maxRequestBytes` caps messages both ways (`server.max_request_bytes`). */
export interface GrpcServerOptions {
  readonly pipeline: DecisionPipeline;
  /** The response side, for ext_proc. */
  readonly answers: AnswerPipeline;
  readonly reports: ReportService;
  readonly logger: Logger;
  readonly health: HealthState;
  readonly maxRequestBytes: number;
  /** Who may call Report and GetSpend (`server.admin`). */
  readonly admin: AdminGuard;
  /** Serve grpc.reflection.v1 and v1alpha (`server.grpc_reflection`). */
  readonly reflection?: boolean;
}

/** The verified mTLS identity of a call's connection; undefined in plaintext or without a verified client certificate. */
export function callPrincipal(call: { getAuthContext(): { sslPeerCertificate?: PeerCertificate | undefined } }): string | undefined {
  return principalOfPeer(call.getAuthContext().sslPeerCertificate);
}

/** The Authorization metadata of a call (the admin bearer token). */
function callAuthorization(call: { metadata: grpc.Metadata }): string | undefined {
  const value = call.metadata.get('authorization')[0];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Builds the gRPC server with Envoy's Authorization, the native DecisionService,
 * grpc.health.v1 and, when asked, server reflection; {@link bindGrpc} starts it listening.
 */
export function createGrpcServer(options: GrpcServerOptions): grpc.Server {
  const services = loadServices();
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.maxRequestBytes,
    'grpc.max_send_message_length': options.maxRequestBytes,
    'grpc.keepalive_permit_without_calls': 1,
    // Channelz is not served; its per-call bookkeeping (trackers, timestamps) would be pure cost.
    'grpc.enable_channelz': 0,
  });

  /** A decision call's answer; never rejects, and any failure is answered as a deny. */
  const answerWith = <Req, Res>(
    door: string,
    toRequest: (message: Req) => DecisionRequest,
    toResponse: (decision: Decision) => Res,
    /** The connection's identity is the client's own (the native API), not a gateway's. */
    peerIsSource: boolean,
  ): ((message: Req, peerPrincipal: string | undefined) => Promise<Res>) => {
    return (message, peerPrincipal) => {
      let request: DecisionRequest;
      try {
        request = withPeerPrincipal(toRequest(message), peerPrincipal, peerIsSource);
      } catch (error) {
        options.logger.warn({ code: 'request_malformed', door, cause: describeCause(error) }, 'cannot map request');
        return Promise.resolve(toResponse(options.pipeline.rejectUnreadable(door, error)));
      }
      return options.pipeline.decide(request).then(toResponse, (error: unknown) => {
        // decide() never rejects by contract. If it ever does, answer with a deny: a gRPC error
        // would let Envoy's failure_mode_allow turn it into an allow.
        options.logger.error({ code: 'internal_error', door, cause: describeCause(error) }, 'pipeline rejected');
        return toResponse(options.pipeline.rejectUnreadable(door, new SignalboxError('internal_error', 'pipeline failure', { cause: error })));
      });
    };
  };
  const decide = <Req, Res>(answer: (message: Req, peerPrincipal: string | undefined) => Promise<Res>): grpc.handleUnaryCall<Req, Res> => {
    return (call, callback) => {
      void answer(call.request, callPrincipal(call)).then((response) => callback(null, response));
    };
  };

  const check = services.authorization.Check as grpc.MethodDefinition<Parameters<typeof fromCheckRequest>[0], CheckResponseMessage>;
  const decideMethod = services.decision.Decide as grpc.MethodDefinition<Parameters<typeof fromDecideRequest>[0], ReturnType<typeof toDecideResponse>>;
  /**
   * A decision method on the lean path (grpc-unary.ts): the same answer from the request's
   * bytes, so a request that cannot be decoded is answered as a deny, like one that cannot be mapped.
   */
  const direct = <Req, Res>(
    method: grpc.MethodDefinition<Req, Res>,
    door: string,
    toRequest: (message: Req) => DecisionRequest,
    toResponse: (decision: Decision) => Res,
    peerIsSource: boolean,
  ): DirectUnaryMethod => ({
    path: method.path,
    answer: answerWith(door, (bytes: Buffer) => toRequest(method.requestDeserialize(bytes)), (decision) => method.responseSerialize(toResponse(decision)), peerIsSource),
  });

  // Check's answers are written by check-response-wire.ts (the same bytes, without protobufjs's per-field garbage).
  const checkWire = { ...check, responseSerialize: encodeCheckResponse };
  server.addService({ ...services.authorization, Check: checkWire }, { Check: decide(answerWith(ENVOY_DOOR, fromCheckRequest, toCheckResponse, false)) });
  // The calls a gateway makes for every request are read and answered on the lean path; the
  // grpc-js handlers registered for them serve what that path leaves to grpc-js.
  serveUnaryDirectly(
    server,
    [direct(checkWire, ENVOY_DOOR, fromCheckRequest, toCheckResponse, false), direct(decideMethod, SIGNALBOX_DOOR, fromDecideRequest, toDecideResponse, true)],
    options.maxRequestBytes,
  );
  server.addService(services.processor, {
    Process: (call: grpc.ServerDuplexStream<unknown, unknown>) =>
      serveProcessStream(call as unknown as ProcessStream, {
        pipeline: options.pipeline,
        answers: options.answers,
        logger: options.logger,
        maxBodyBytes: options.maxRequestBytes,
        peerPrincipal: callPrincipal(call),
      }),
  });
  // Administrative calls: the admin check first (server.admin), then the call.
  const native = <Req, Res>(name: string, run: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> => {
    return (call, callback) => {
      Promise.resolve()
        .then(() => options.admin.authorize({ authorization: callAuthorization(call), principal: callPrincipal(call) }, `signalbox.v1.DecisionService/${name}`))
        .then(() => run(call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => {
            const answer = answerFor(error);
            if (answer.code === 'internal_error') options.logger.error({ code: 'internal_error', rpc: name, cause: describeCause(error) }, 'native call failed');
            callback({ code: grpc.status[answer.grpc], details: `${answer.code}: ${answer.text}` });
          },
        );
    };
  };

  server.addService(services.decision, {
    Decide: decide(answerWith(SIGNALBOX_DOOR, fromDecideRequest, toDecideResponse, true)),
    Report: native('Report', (request: ReportMessage) => options.reports.report(SIGNALBOX_DOOR, fromReportMessage(request)).then(toReportResponse)),
    GetSpend: native('GetSpend', async (request: { scope?: string; window?: string }) =>
      toSpendResponse(await options.reports.spend(request.scope || undefined, request.window || undefined)),
    ),
  });
  if (options.reflection) addReflection(server);
  server.addService(services.health, {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const service = call.request.service ?? '';
      if (!HealthState.SERVICES.includes(service)) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service "${service}"` });
        return;
      }
      callback(null, { status: options.health.current });
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, unknown>) => {
      const service = call.request.service ?? '';
      if (!HealthState.SERVICES.includes(service)) {
        call.write({ status: 'SERVICE_UNKNOWN' });
        return;
      }
      options.health.watch(call as grpc.ServerWritableStream<unknown, unknown>);
    },
  });
  return server;
}

/**
 * Listens on `host:port`, in plaintext unless `credentials` are given (TLS from `server.tls`), and
 * resolves the bound port (port 0 picks a free one); a failure is `config_invalid` naming
 * `server.grpc_addr`.
 */
export function bindGrpc(server: grpc.Server, address: string, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (error, port) => {
      if (error) reject(new SignalboxError('config_invalid', `server.grpc_addr: cannot listen on ${address}: ${error.message}`, { cause: error }));
      else resolve(port);
    });
  });
}

/** Stops accepting calls, lets in-flight ones finish for up to `graceMs`, then cuts the rest. */
export function shutdownGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
