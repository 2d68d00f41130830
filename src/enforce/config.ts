/** The `store` and `budgets` sections: where counters live, and how holds, windows and spend lookups behave. */
import { z } from 'zod';
import { listOrString } from '../core/config-values.js';
import { WINDOW_PATTERN } from './windows.js';

const redisNode = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'must be host:port');

/** The `store` section. */
export const storeSchema = z
  .object({
    /** memory: one process (the embedded default). redis: shared by every replica. */
    type: z.enum(['memory', 'redis']).default('memory'),
    /** redis://[user:password@]host:port[/db] (or rediss://) of a standalone Redis. */
    redis_url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
    /** Seed nodes of a Redis Cluster, instead of redis_url. */
    redis_cluster: listOrString.pipe(z.array(redisNode)).optional(),
    redis_password: z.string().optional(),
    /** Every key starts with this hash tag, so several deployments can share one Redis. */
    key_prefix: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only').default('signalbox'),
    /** none: all counters in one slot (always correct). tenant: one slot per tenant (Cluster scale-out; every budget scope must belong to one tenant). */
    partition: z.enum(['none', 'tenant']).default('none'),
    /**
     * refuse: do not start (and refuse reservations on a reconnected server) when Redis could
     * lose holds in a crash (no AOF, appendfsync no, unreadable settings). warn: log it only.
     */
    unsafe_persistence: z.enum(['refuse', 'warn']).default('refuse'),
    command_timeout_ms: z.number().int().min(10).max(60_000).default(500),
    connect_timeout_ms: z.number().int().min(100).max(60_000).default(2_000),
  })
  .strict()
  .superRefine((store, ctx) => {
    if (store.type !== 'redis') return;
    if (!store.redis_url && !store.redis_cluster?.length) {
      ctx.addIssue({ code: 'custom', path: ['redis_url'], message: 'set redis_url or redis_cluster when type is redis' });
    }
    if (store.redis_url && store.redis_cluster?.length) {
      ctx.addIssue({ code: 'custom', path: ['redis_cluster'], message: 'set either redis_url or redis_cluster, not both' });
    }
  });

// Session windows are read per session scope, so they are not listed here.
const budgetWindow = z
  .string()
  .refine((window) => WINDOW_PATTERN.test(window) && window !== 'session', 'must be day, week, month or <seconds>s');

/** The `budgets` section. */
export const budgetsSchema = z
  .object({
    /** How long a reservation waits for its usage report before it expires. */
    hold_ttl_ms: z.number().int().min(1_000).max(86_400_000).default(600_000),
    /** charge: an expired hold costs its full estimate (a late report corrects it). release: it costs nothing. */
    expired_holds: z.enum(['charge', 'release']).default('charge'),
    /** How long counters outlive their window and settled holds are remembered (late and repeated reports). */
    retention_ms: z.number().int().min(60_000).max(90 * 86_400_000).default(86_400_000),
    /** How long a `session` window budget lives after its last reservation. */
    session_ttl_ms: z.number().int().min(60_000).max(90 * 86_400_000).default(86_400_000),
    /** How long an agent session's tool-call history is kept after its last call. */
    loop_ttl_ms: z.number().int().min(1_000).max(7 * 86_400_000).default(3_600_000),
    /** Scopes looked up for `input.spend`; {subject} {team} {tenant} {session} {client_id} are filled in; a scope with an empty field is skipped. */
    spend_scopes: listOrString.default(['user:{subject}', 'team:{team}', 'org:{tenant}', 'session:{subject}/{session}']),
    /** Windows looked up for `input.spend` (session scopes use the session window). */
    spend_windows: listOrString.pipe(z.array(budgetWindow)).default(['day', 'month']),
  })
  .strict();

/** The parsed `store` section, with defaults applied. */
export type StoreConfig = z.output<typeof storeSchema>;
/** The parsed `budgets` section, with defaults applied. */
export type BudgetsConfig = z.output<typeof budgetsSchema>;
