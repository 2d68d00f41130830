/**
 * What a Redis server persists, and whether a crash could lose holds and settlements.
 *
 * A budget cap is only as durable as the counters behind it: a Redis that restarts empty (no
 * AOF, or RDB snapshots only) forgets every hold and settlement since its last snapshot, and the
 * cap is spent again (the review saw $6.98 admitted against a $5.00 cap). What a cap needs is the
 * append-only file with `appendfsync always` (nothing acknowledged is ever lost) or `everysec`
 * (a crash can lose about the last second, two when the disk is slow: Redis then postpones its
 * AOF writes while still replying). `appendfsync no` leaves flushing to the OS (about 30 s on
 * Linux).
 *
 * Managed Redis often disables or renames CONFIG; then `INFO persistence` (aof_enabled) is read
 * instead, and the fsync policy is reported as unknown.
 */
import type { Redis } from 'ioredis';
import { SignalboxError, describeCause } from '../core/errors.js';
import type { Logger } from '../core/log.js';

/** One server's persistence as read at connection time. */
export interface NodePersistence {
  /** host:port of the server. */
  readonly node: string;
  /** Where the settings came from: CONFIG GET, INFO persistence (CONFIG refused), or nothing could be read. */
  readonly source: 'config' | 'info' | 'unreadable';
  readonly aof: boolean | undefined;
  /** always, everysec or no; undefined when only INFO could be read. */
  readonly appendfsync: string | undefined;
  /** The RDB `save` schedule ('' when off); undefined when only INFO could be read. */
  readonly save: string | undefined;
  /** Why CONFIG (and INFO) could not be read, for the log. */
  readonly unreadable?: string;
}

/** What {@link judgePersistence} concluded about one server. */
export interface PersistenceJudgement {
  /** Set when a crash could lose acknowledged holds or settlements: why, in one sentence. */
  readonly problem?: string;
  /** Set when the server is acceptable but something could not be verified. */
  readonly note?: string;
}

async function configValue(node: Redis, name: string): Promise<string | undefined> {
  const reply = (await node.call('CONFIG', 'GET', name)) as string[];
  return reply.length >= 2 ? String(reply[1]) : undefined;
}

/** Reads one server's persistence settings: CONFIG GET, then INFO persistence when CONFIG is refused. */
export async function readPersistence(node: Redis): Promise<NodePersistence> {
  const name = `${node.options.host ?? '?'}:${node.options.port ?? '?'}`;
  let configError: unknown;
  try {
    const [appendonly, appendfsync, save] = await Promise.all([configValue(node, 'appendonly'), configValue(node, 'appendfsync'), configValue(node, 'save')]);
    if (appendonly !== undefined) return { node: name, source: 'config', aof: appendonly === 'yes', appendfsync, save };
  } catch (error) {
    // ERR unknown command (renamed or disabled on managed Redis), NOPERM (an ACL user).
    configError = error;
  }
  try {
    const info = (await node.call('INFO', 'persistence')) as string;
    const aof = /^aof_enabled:(\d)/m.exec(info);
    if (aof) return { node: name, source: 'info', aof: aof[1] === '1', appendfsync: undefined, save: undefined };
    return { node: name, source: 'unreadable', aof: undefined, appendfsync: undefined, save: undefined, unreadable: 'INFO persistence has no aof_enabled field' };
  } catch (error) {
    const why = `CONFIG GET: ${configError === undefined ? 'no answer' : describeCause(configError)}; INFO persistence: ${describeCause(error)}`;
    return { node: name, source: 'unreadable', aof: undefined, appendfsync: undefined, save: undefined, unreadable: why };
  }
}

/** Whether a crash of this server could lose what Signalbox acknowledged (see the file comment). */
export function judgePersistence(p: NodePersistence): PersistenceJudgement {
  if (p.source === 'unreadable') {
    return { problem: `${p.node}: its persistence settings cannot be read (${p.unreadable ?? 'unknown'}), so a cap cannot be shown to survive a crash` };
  }
  if (!p.aof) {
    const snapshots = p.save === undefined ? '' : p.save === '' ? ' and no RDB snapshots' : ` (RDB snapshots only, save "${p.save}")`;
    return { problem: `${p.node}: the append-only file is off${snapshots}, so a crash or restart loses holds and settlements and a cap can be spent again; set appendonly yes with appendfsync everysec or always` };
  }
  if (p.appendfsync === 'no') {
    return { problem: `${p.node}: appendfsync no leaves flushing to the OS, so a machine crash loses about 30 s of holds and settlements; set appendfsync everysec or always` };
  }
  if (p.appendfsync === undefined) {
    return { note: `${p.node}: AOF is on (read from INFO; CONFIG is not available), its fsync policy cannot be read: make sure it is everysec or always` };
  }
  return {};
}

/** What {@link assessPersistence} concluded for a whole deployment. */
export interface PersistenceVerdict {
  /** Set when reservations must be refused (a problem, and the setting is `refuse`). */
  readonly refusal?: SignalboxError;
}

/**
 * Reads and judges every server (a Cluster's masters), logs what it found
 * (`store_persistence_unsafe`), and returns the refusal when `mode` is `refuse` and a crash
 * could lose holds. Throws when a server stops answering mid-check.
 */
export async function assessPersistence(nodes: readonly Redis[], mode: 'refuse' | 'warn', logger: Logger): Promise<PersistenceVerdict> {
  const problems: string[] = [];
  for (const node of nodes) {
    const judgement = judgePersistence(await readPersistence(node));
    if (judgement.problem) problems.push(judgement.problem);
    if (judgement.note) logger.warn({ code: 'store_persistence_unsafe' }, judgement.note);
  }
  if (problems.length === 0) return {};
  const text = `Redis could lose holds and settlements in a crash, so a budget cap could be spent twice: ${problems.join('; ')}`;
  if (mode === 'warn') {
    logger.warn({ code: 'store_persistence_unsafe' }, `${text} (accepted: store.unsafe_persistence is warn)`);
    return {};
  }
  const refusal = new SignalboxError('store_persistence_unsafe', `${text} (or set store.unsafe_persistence: warn to accept the risk)`);
  logger.error({ code: 'store_persistence_unsafe' }, refusal.message);
  return { refusal };
}

/**
 * Whether the connected servers may take reservations: judged again on every connection (a
 * restarted server may come back with other settings, or empty), and every reservation waits for
 * the current judgement, so none reaches a server before it is judged.
 */
export class PersistenceGate {
  /** Set while the connected servers' persistence is unsafe and the setting is `refuse`. */
  private refusal: SignalboxError | undefined;
  /** The judgement of the current connection. */
  private judged: Promise<void> = Promise.resolve();

  /**
   * @param nodes the servers connected now (a Cluster's masters)
   * @param interrupted logs a check cut short by a dropped connection (the next one judges again)
   */
  constructor(
    private readonly nodes: () => Redis[],
    private readonly mode: 'refuse' | 'warn',
    private readonly logger: Logger,
    private readonly interrupted: (error: unknown) => void,
  ) {}

  /** Judges the servers of a new connection. */
  recheck(): void {
    this.judged = this.judge();
  }

  /** Waits for the current judgement; throws `store_persistence_unsafe` when it refuses. */
  async settled(): Promise<void> {
    await this.judged;
    if (this.refusal) throw this.refusal;
  }

  /** Waits for the current judgement; throws `budget_store_unavailable` when it refuses. */
  async admit(): Promise<void> {
    await this.judged;
    if (this.refusal) throw new SignalboxError('budget_store_unavailable', 'the budget store (Redis) is refused', { cause: this.refusal });
  }

  private async judge(): Promise<void> {
    let verdict: PersistenceVerdict;
    try {
      verdict = await assessPersistence(this.nodes(), this.mode, this.logger);
    } catch (error) {
      this.interrupted(error);
      return;
    }
    if (!verdict.refusal && this.refusal) this.logger.info('budget store persistence is safe again; reservations resume');
    this.refusal = verdict.refusal;
  }
}
