/**
 * Wiring: config → bundle, engine, identity, audit, pipeline → gRPC and HTTP listeners.
 */
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Server as HttpServer } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { FileAuditLog, appendInBackground, type AuditSink } from '../audit/log.js';
import { workerAuditPath, workersRecord } from '../audit/worker-chains.js';
import { OtlpExporter } from '../audit/otlp.js';
import { DecisionLogShipper } from '../audit/ship-opa.js';
import type { SignalboxConfig } from '../config/schema.js';
import { SignalboxError } from '../core/errors.js';
import { IdentityVerifier } from '../identity/verifier.js';
import type { Logger } from '../core/log.js';
import { DecisionPipeline, type PipelineOptions } from '../decide/decide.js';
import { Enforcer } from '../enforce/enforcer.js';
import { MemoryStore } from '../enforce/memory-store.js';
import type { EnforcementStore } from '../enforce/store.js';
import { warmUpTokenizers } from '../inspect/llm/tokenizer.js';
import { PriceTable } from '../inspect/prices.js';
import { ReportService } from '../enforce/report.js';
import { resolveBundlePath } from '../core/paths.js';
import { defaultResolver } from '../inspect/destinations/resolve.js';
import { credentialHeaders, type CredentialLookup, type RoutingOptions } from '../decide/route.js';
import { CredentialSource } from '../vault/credentials.js';
import { VAULT_KEY_ENV } from '../vault/keyring.js';
import type { PolicyEngine } from '../policy/engine.js';
import { PolicySource, type BundleObservation } from '../bundles/source.js';
import { BundleHistory } from '../bundles/history.js';
import { AuditChainMonitor } from '../audit/status.js';
import { bindGrpc, createGrpcServer, HealthState, shutdownGrpc } from '../transport/grpc.js';
import { AnswerPipeline } from '../decide/answer.js';
import { ResponsePipeline } from '../decide/response.js';
import type { ContentOptions } from '../inspect/content/facts.js';
import { createHttpServer, listenHttp } from '../transport/http.js';
import type { KeyWatchOptions } from '../identity/keys.js';
import { ReadinessMonitor, type ReadinessCheck } from './readiness.js';
import { Metrics } from '../transport/metrics.js';
import { AdminGuard } from '../transport/admin-auth.js';
import { TlsFiles } from '../transport/tls.js';
import type { LedgerView } from '../ledger/ledger.js';
import { openSpendLedger } from './ledger-ipc.js';

/**
 * A started server: its bound ports (useful when the config asked for port 0), the parts tests and
 * the CLI reach into, and `close`.
 */
export interface RunningSignalbox {
  readonly grpcPort: number;
  readonly httpPort: number;
  /** The engine deciding now; a reload replaces it (see {@link policy}). */
  readonly engine: PolicyEngine;
  /** The active policy and what keeps it current (bundle file watch or bundle server). */
  readonly policy: PolicySource;
  readonly pipeline: DecisionPipeline;
  readonly enforcer: Enforcer;
  readonly reports: ReportService;
  readonly audit: AuditSink;
  /** The spend ledger, when `ledger.enabled`. */
  readonly ledger?: LedgerView;
  /** What GET /metrics serves from (a worker hands its own registry to the primary to aggregate). */
  readonly metrics: Metrics;
  /** Drains in-flight calls (up to the configured grace), flushes the audit log, closes listeners. */
  close(): Promise<void>;
}

/**
 * Parts of the pipeline a caller may replace, so tests and `signalbox test` run without Redis,
 * DNS, a vault key or wall-clock time.
 */
export interface PipelineDependencies {
  readonly clock?: () => bigint;
  /** Replace the configured enforcement store (tests). */
  readonly store?: EnforcementStore;
  /** Replace DNS for `input.destinations` (tests never touch the network). */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** Replace the vault (tests); by default it is opened when SIGNALBOX_VAULT_KEY is set. */
  readonly credentials?: CredentialLookup;
  /** Observes every finished decision (the server's metrics). */
  readonly onDecision?: PipelineOptions['onDecision'];
  /** Receives a span per decision (OpenTelemetry, audit.otlp). */
  readonly telemetry?: PipelineOptions['telemetry'];
  /** Observes bundle loads and downloads (the server's metrics). */
  readonly onBundle?: (observation: BundleObservation) => void;
  /** The policy to decide with, instead of opening `policy.bundle` or the bundle server (a worker's, fed by its primary). */
  readonly policy?: PolicySource;
  /** Whether and how `identity.jwks_file` is watched; default not watched (`eval`, `test`): the server watches it. */
  readonly keyWatch?: KeyWatchOptions;
}

/**
 * This process's place among several workers (`server.workers` > 1, src/app/cluster.ts): its
 * audit chain is its own file, GET /metrics answers every worker's sum, and it logs as a worker.
 */
export interface WorkerRole {
  /** 1-based, kept when the primary restarts it. */
  readonly id: number;
  readonly workers: number;
  /** Every worker's metrics, aggregated by the primary. */
  readonly metrics: () => Promise<string>;
  /** The primary's embedded ledger, asked over IPC (`ledger.database: embedded`, src/app/ledger-ipc.ts). */
  readonly ledger?: LedgerView & { close(): Promise<void> };
}

/** What {@link startSignalbox} lets a caller replace: the pipeline's dependencies, and the audit log it would otherwise open at `audit.path`. */
export interface StartOptions extends PipelineDependencies {
  /** Replace the file audit log (tests). */
  readonly audit?: AuditSink;
  /** Set in a worker of several (src/app/cluster.ts); absent, this process is the whole service. */
  readonly worker?: WorkerRole;
  /** Where the admin tokens (`server.admin.token_env`) are read from; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
}


/**
 * The configured enforcement store: in-memory by default, Redis when configured. Throws
 * `store_persistence_unsafe` when the Redis reached at start-up could lose holds in a crash
 * (unless `store.unsafe_persistence: warn`).
 */
export async function createStore(config: SignalboxConfig, logger: Logger): Promise<EnforcementStore> {
  const store = config.store;
  if (store.type === 'memory') return new MemoryStore(config.budgets.expired_holds);
  // Loaded only when configured: ioredis is about 6 MiB of every process that never uses it.
  const { RedisStore } = await import('../enforce/redis-store.js');
  const redis = RedisStore.create(
    {
      ...(store.redis_url ? { url: store.redis_url } : {}),
      ...(store.redis_cluster ? { cluster: store.redis_cluster } : {}),
      ...(store.redis_password ? { password: store.redis_password } : {}),
      keyPrefix: store.key_prefix,
      commandTimeoutMs: store.command_timeout_ms,
      connectTimeoutMs: store.connect_timeout_ms,
      expiredHolds: config.budgets.expired_holds,
      partitioned: store.partition === 'tenant',
      unsafePersistence: store.unsafe_persistence,
    },
    logger,
  );
  try {
    // A Redis that would forget holds in a crash is refused here, before any request is served.
    await redis.checkPersistenceAtStart(store.connect_timeout_ms);
  } catch (error) {
    await redis.close();
    throw error;
  }
  return redis;
}

/** Builds the enforcer from the `budgets`, `store` and `routing.breaker` sections, over a store the caller chose. */
export function createEnforcer(config: SignalboxConfig, store: EnforcementStore, prices: PriceTable): Enforcer {
  const budgets = config.budgets;
  return new Enforcer({
    store,
    prices,
    holdTtlMs: budgets.hold_ttl_ms,
    retentionMs: budgets.retention_ms,
    loopTtlMs: budgets.loop_ttl_ms,
    sessionTtlMs: budgets.session_ttl_ms,
    partition: config.store.partition,
    spendScopes: budgets.spend_scopes,
    spendWindows: budgets.spend_windows,
    breaker: {
      failureThreshold: config.routing.breaker.failure_threshold,
      failureWindowMs: config.routing.breaker.failure_window_ms,
      coolDownMs: config.routing.breaker.cool_down_ms,
    },
  });
}

/** The pipeline's routing options from config: credential schemes and the headers to strip. */
export function routingOptions(config: SignalboxConfig): RoutingOptions {
  return {
    schemes: Object.fromEntries(
      Object.entries(config.routing.providers).map(([name, p]) => [name, { header: p.credential_header, prefix: p.credential_prefix }]),
    ),
    stripHeaders: config.routing.strip_headers,
  };
}

/**
 * The headers whose values never reach the audit trail or `signalbox eval`'s output: the
 * configured ones, the token header, the caller credential headers routing strips, and every
 * header a provider credential can travel in.
 */
export function maskedHeaders(config: SignalboxConfig): Set<string> {
  return new Set([...config.audit.mask_headers, config.identity.header, ...config.routing.strip_headers, ...credentialHeaders(routingOptions(config))]);
}

/**
 * The vault the server injects credentials from: opened when its master key is in the
 * environment, else none (a policy naming a credential is then denied with credential_unavailable).
 */
export async function openCredentials(config: SignalboxConfig, logger: Logger, env: NodeJS.ProcessEnv = process.env): Promise<CredentialSource | undefined> {
  if (!env[VAULT_KEY_ENV]) {
    if (existsSync(resolve(config.vault.file))) logger.warn({ path: resolve(config.vault.file) }, `vault file present but ${VAULT_KEY_ENV} is not set; no credentials will be injected`);
    return undefined;
  }
  return CredentialSource.open({ file: resolve(config.vault.file), env, logger });
}

/** The `content` section as the scanners take it, for requests and answers alike. */
function contentOptions(config: SignalboxConfig): ContentOptions {
  return { enabled: config.content.enabled, maxStringBytes: config.content.max_string_bytes, maxDepth: config.content.max_depth };
}

/**
 * What readiness waits for: the JWKS, when one is configured, to have been loaded once, and the
 * budget store to answer.
 */
export function readinessChecks(identity: IdentityVerifier, store: EnforcementStore): ReadinessCheck[] {
  const checks: ReadinessCheck[] = [
    {
      code: 'budget_store_unavailable',
      ok: async () => {
        await store.ping();
        return true;
      },
    },
  ];
  const keys = identity.keys;
  if (keys) checks.push({ code: 'jwks_unavailable', ok: () => keys.ensureLoaded() });
  return checks;
}

/** Builds the decision pipeline from config, without listening anywhere (used by `eval` too). */
export async function createPipeline(
  config: SignalboxConfig,
  logger: Logger,
  audit: AuditSink,
  dependencies: PipelineDependencies = {},
): Promise<{ pipeline: DecisionPipeline; engine: PolicyEngine; policy: PolicySource; enforcer: Enforcer; identity: IdentityVerifier }> {
  const { clock } = dependencies;
  const store = dependencies.store ?? (await createStore(config, logger));
  // Loaded now; reloading (file watch or bundle server) begins with policy.start().
  const policy =
    dependencies.policy ??
    (await PolicySource.open({
      config: config.policy,
      bundlePath: resolveBundlePath(config.policy.bundle),
      logger,
      ...(dependencies.onBundle ? { observe: dependencies.onBundle } : {}),
    }));
  const identity = await IdentityVerifier.create(config.identity, logger, dependencies.keyWatch ?? { watch: false });
  const prices = config.llm.prices_file ? PriceTable.fromFile(resolve(config.llm.prices_file)) : PriceTable.default();
  const enforcer = createEnforcer(config, store, prices);
  const pipeline = new DecisionPipeline({
    engine: () => policy.current(),
    identity,
    audit,
    logger,
    maskHeaders: maskedHeaders(config),
    auditInput: config.audit.input,
    ...(clock ? { clock } : {}),
    labels: { id: hostname(), service: 'signalbox' },
    enforcer,
    llm: { prices, defaultMaxOutputTokens: config.llm.default_max_output_tokens },
    sessionHeaders: config.identity.session_headers,
    content: contentOptions(config),
    destinations: {
      resolve: dependencies.resolve ?? (config.destinations.resolve ? defaultResolver : () => Promise.resolve([])),
      timeoutMs: config.destinations.timeout_ms,
      maxDestinations: config.destinations.max_per_request,
    },
    routing: routingOptions(config),
    dryRun: config.policy.dry_run,
    ...(config.audit.durability === 'fsync' ? { durableAudit: { timeoutMs: config.audit.durable_timeout_ms } } : {}),
    ...(dependencies.credentials ? { credentials: dependencies.credentials } : {}),
    ...(dependencies.onDecision ? { onDecision: dependencies.onDecision } : {}),
    ...(dependencies.telemetry ? { telemetry: dependencies.telemetry } : {}),
  });
  return { pipeline, engine: policy.current(), policy, enforcer, identity };
}

/**
 * The spend ledger, when enabled. Each process serves its API; only one loads. With PostgreSQL
 * that is the only process, or worker 1, which follows every worker's chain; the embedded
 * database belongs to one process, so with workers the primary opens and loads it and each
 * worker asks it over IPC (src/app/ledger-ipc.ts).
 */
async function openLedger(config: SignalboxConfig, logger: Logger, worker: WorkerRole | undefined, env: NodeJS.ProcessEnv): Promise<(LedgerView & { close(): Promise<void> }) | undefined> {
  if (!config.ledger.enabled) return undefined;
  if (worker && config.ledger.database === 'embedded') {
    if (!worker.ledger) throw new SignalboxError('internal_error', 'the primary did not hand this worker its embedded ledger');
    return worker.ledger;
  }
  return openSpendLedger(config, logger, env, !worker || worker.id === 1);
}

/**
 * Starts the whole service from a validated config: loads the policy, binds gRPC and HTTP, and
 * marks health serving only once both listen. A bind failure closes what was opened and throws.
 */
export async function startSignalbox(config: SignalboxConfig, logger: Logger, options: StartOptions = {}): Promise<RunningSignalbox> {
  const shipper = config.audit.decision_logs ? DecisionLogShipper.fromConfig(config.audit.decision_logs, logger) : undefined;
  const exporter = config.audit.otlp ? OtlpExporter.fromConfig(config.audit.otlp, logger) : undefined;
  const onLine = (line: string, record: Readonly<Record<string, unknown>>): void => {
    shipper?.offer(line);
    if (exporter) {
      const trace = typeof record.trace_id === 'string' && typeof record.span_id === 'string' ? { traceId: record.trace_id, spanId: record.span_id } : undefined;
      exporter.log(line, BigInt(Date.now()) * 1_000_000n, trace, typeof record.decision_id === 'string' ? record.decision_id : undefined);
    }
  };
  const worker = options.worker;
  // Each worker chains its own file (worker-chains.ts): the audit writer stays off any IPC.
  const auditPath = worker ? workerAuditPath(resolve(config.audit.path), worker.id) : resolve(config.audit.path);
  const audit =
    options.audit ??
    (await FileAuditLog.open(auditPath, logger, {
      durability: config.audit.durability,
      flushMs: config.audit.flush_ms,
      rotation: { maxBytes: config.audit.rotate_bytes, keepFiles: config.audit.keep_files },
      ...(shipper || exporter ? { onLine } : {}),
    }));
  if (worker) appendInBackground(audit, workersRecord(resolve(config.audit.path), worker.id, worker.workers, new Date()));
  // Load the default tokenizer encoding now, not on the first request (about 100 ms).
  warmUpTokenizers();
  const store = options.store ?? (await createStore(config, logger));
  const vault = options.credentials ? undefined : await openCredentials(config, logger);
  const credentials = options.credentials ?? vault;
  const metrics = new Metrics({
    ...(audit instanceof FileAuditLog ? { audit: () => audit } : {}),
    ...(shipper ? { shipped: () => shipper.counts } : {}),
    ...(worker ? { aggregate: worker.metrics } : {}),
  });
  // What the console shows beside spend: recent bundle loads, and whether the audit chain verifies
  // (the directory, so rotated files and other workers' chains are checked with the live file).
  const bundleHistory = new BundleHistory();
  const auditChain = new AuditChainMonitor({ target: dirname(resolve(config.audit.path)), logger });
  const { pipeline, policy, enforcer, identity } = await createPipeline(config, logger, audit, {
    keyWatch: {},
    ...options,
    ...(exporter ? { telemetry: exporter } : {}),
    onDecision: metrics.onDecision,
    onBundle: (observation) => {
      metrics.onBundle(observation);
      bundleHistory.observe(observation);
    },
    store,
    ...(credentials ? { credentials } : {}),
  });
  const clock = options.clock;
  const reports = new ReportService({ enforcer, audit, logger, observe: metrics.onReport, ...(clock ? { clock: () => Number(clock() / 1_000_000n) } : {}) });
  const health = new HealthState();
  const readiness = new ReadinessMonitor({ checks: readinessChecks(identity, store), health, logger, intervalMs: config.server.ready_check_ms });
  const responses = new ResponsePipeline({
    engine: () => policy.current(),
    entrypoint: config.policy.response,
    reports,
    audit,
    logger,
    ...(clock ? { clock } : {}),
    labels: { id: hostname(), service: 'signalbox' },
  });
  const answers = new AnswerPipeline(responses, contentOptions(config), logger);
  let admin: AdminGuard | undefined;
  let ledger: (LedgerView & { close(): Promise<void> }) | undefined;
  let tls: TlsFiles | undefined;
  let grpcServer: grpc.Server | undefined;
  let httpServer: HttpServer | undefined;
  let grpcPort: number;
  let httpPort: number;
  try {
    admin = await AdminGuard.open(config.server.admin, logger, options.env ?? process.env);
    tls = config.server.tls ? await TlsFiles.open(config.server.tls, logger) : undefined;
    ledger = await openLedger(config, logger, worker, options.env ?? process.env);
    grpcServer = createGrpcServer({ pipeline, answers, reports, logger, health, maxRequestBytes: config.server.max_request_bytes, admin, reflection: config.server.grpc_reflection });
    const consoleSources = { policy: () => ({ revision: policy.revision, origin: policy.origin, loads: bundleHistory.recent() }), audit: () => auditChain.status() };
    httpServer = createHttpServer({ health, revision: () => policy.revision, reports, pipeline, logger, metrics, admin, console: consoleSources, ...(ledger ? { ledger } : {}) }, undefined, tls);
    grpcPort = await bindGrpc(grpcServer, config.server.grpc_addr, tls?.grpcCredentials());
    httpPort = await listenHttp(httpServer, config.server.http_addr).catch((error: Error) => {
      throw new SignalboxError('config_invalid', `server.http_addr: cannot listen on ${config.server.http_addr}: ${error.message}`, { cause: error });
    });
  } catch (error) {
    grpcServer?.forceShutdown();
    httpServer?.close();
    await tls?.close();
    await admin?.close();
    await ledger?.close();
    await policy.close();
    await identity.close();
    await audit.close();
    await shipper?.stop();
    await exporter?.stop();
    await store.close();
    await vault?.close();
    throw error;
  }
  // The first round of checks runs before serving is announced, so a start with Redis or the
  // identity provider down never shows SERVING first (bounded by the checks' own timeouts).
  await readiness.start();
  const grpcListener = grpcServer;
  const httpListener = httpServer;
  health.set('SERVING');
  if (config.policy.dry_run) logger.warn({ dry_run: true }, 'dry-run: policy denials are logged and audited but not enforced');
  policy.start();
  // A worker's ports are the primary's to announce, once every worker listens.
  if (worker) logger.info({ revision: policy.revision, pid: process.pid }, 'worker serving');
  else {
    logger.info(
      { grpc_port: grpcPort, http_port: httpPort, revision: policy.revision, decision: config.policy.decision, bundle: policy.origin },
      'signalbox serving',
    );
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      health.set('NOT_SERVING');
      health.endWatches();
      await readiness.stop();
      await identity.close();
      await policy.close();
      await shutdownGrpc(grpcListener, config.server.shutdown_grace_ms);
      await new Promise<void>((done) => {
        httpListener.close(() => done());
        httpListener.closeAllConnections();
      });
      await tls?.close();
      await admin?.close();
      await audit.close();
      // After the audit file is flushed, so a clean stop loads nothing less; the loader finishes its pass.
      await ledger?.loadNow().catch(() => undefined);
      await ledger?.close();
      await shipper?.stop();
      await exporter?.stop();
      await store.close();
      await vault?.close();
      logger.info(worker ? 'worker stopped' : 'signalbox stopped');
    })();
    return closing;
  };
  return {
    grpcPort,
    httpPort,
    get engine() {
      return policy.current();
    },
    policy,
    pipeline,
    enforcer,
    reports,
    audit,
    ...(ledger ? { ledger } : {}),
    metrics,
    close,
  };
}
