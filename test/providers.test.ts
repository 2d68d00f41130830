/**
 * Provider health from usage reports: which reports count as a provider failure, the report
 * body's new fields, the report contract (settle, then feed the breaker; health-only reports;
 * transitions audited once), and the same over HTTP and gRPC. The breaker itself is held to one
 * behaviour on every store in enforce-store.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditFile } from '../src/audit/chain.js';
import type { AuditSink } from '../src/audit/log.js';
import { DEFAULT_BREAKER, Enforcer } from '../src/enforce/enforcer.js';
import { MemoryStore } from '../src/enforce/memory-store.js';
import type { EnforcementStore, ProviderBreakerSettings } from '../src/enforce/store.js';
import { SignalboxError } from '../src/core/errors.js';
import { PriceTable } from '../src/inspect/prices.js';
import { silentLogger } from '../src/core/log.js';
import { ReportService, parseReport, providerOutcome } from '../src/enforce/report.js';
import { loadServices } from '../src/transport/protos.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, adminMetadata, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';
import { windowSlot } from '../src/enforce/windows.js';

describe('providerOutcome', () => {
  it.each([
    [{}, 'success'],
    [{ outcome: 'completed' }, 'success'],
    [{ outcome: 'failed' }, 'failure'],
    [{ outcome: 'timeout' }, 'failure'],
    [{ outcome: 'not_sent' }, null],
    [{ outcome: 'not_sent', upstream_status: 503 }, null],
    [{ upstream_status: 200 }, 'success'],
    [{ upstream_status: 204 }, 'success'],
    [{ upstream_status: 304 }, 'success'],
    [{ outcome: 'failed', upstream_status: 200 }, 'success'],
    [{ outcome: 'completed', upstream_status: 500 }, 'failure'],
    [{ upstream_status: 502 }, 'failure'],
    [{ upstream_status: 599 }, 'failure'],
    [{ upstream_status: 429 }, 'failure'],
    [{ outcome: 'failed', upstream_status: 429 }, 'failure'],
    [{ upstream_status: 400 }, null],
    [{ outcome: 'failed', upstream_status: 401 }, null],
    [{ outcome: 'failed', upstream_status: 404 }, null],
    [{ upstream_status: 413 }, null],
    [{ outcome: 'timeout', upstream_status: 400 }, 'failure'],
    [{ outcome: 'timeout', upstream_status: 200 }, 'failure'],
    [{ outcome: 'failed', upstream_status: 101 }, 'failure'],
    [{ upstream_status: 101 }, 'success'],
  ] as const)('%j → %s', (report, expected) => {
    expect(providerOutcome(report)).toBe(expected);
  });
});

describe('report body: provider fields', () => {
  it.each([
    { decision_id: 'd', provider: 'openai', outcome: 'timeout' },
    { decision_id: 'd', provider: 'azure-openai/eu', upstream_status: 503, outcome: 'failed' },
    { decision_id: 'd', provider: 'x'.repeat(128), upstream_status: 100 },
    { decision_id: 'd', upstream_status: 599, cost_usd: 0.01 },
    { decision_id: 'd', provider: 'Ωmega ✓', usage: { input_tokens: 1, output_tokens: 2 } },
  ])('accepts %j', (body) => {
    expect(parseReport(body)).toMatchObject(body);
  });

  it.each([
    ['an empty provider', { decision_id: 'd', provider: '' }],
    ['a provider of 129 characters', { decision_id: 'd', provider: 'x'.repeat(129) }],
    ['a provider with a newline', { decision_id: 'd', provider: 'open\nai' }],
    ['a provider with a C1 control', { decision_id: 'd', provider: 'open\u0085ai' }],
    ['a provider that is not a string', { decision_id: 'd', provider: 7 }],
    ['a status below 100', { decision_id: 'd', upstream_status: 99 }],
    ['a status above 599', { decision_id: 'd', upstream_status: 600 }],
    ['a fractional status', { decision_id: 'd', upstream_status: 200.5 }],
    ['a status as a string', { decision_id: 'd', upstream_status: '503' }],
    ['an unknown outcome', { decision_id: 'd', outcome: 'aborted' }],
    ['an unknown field', { decision_id: 'd', provider: 'openai', status: 503 }],
    ['no decision id', { provider: 'openai', outcome: 'timeout' }],
  ])('rejects %s', (_what, body) => {
    let error: unknown;
    try {
      parseReport(body);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SignalboxError);
    expect(error).toMatchObject({ code: 'report_malformed' });
  });
});

/**
 * Noon UTC of the real current day, never a fixed date: the memory store's pruning runs on the
 * real clock, and a frozen date must not meet it.
 */
const T0 = Math.floor(Date.now() / 86_400_000) * 86_400_000 + 43_200_000;
const BREAKER: ProviderBreakerSettings = { failureThreshold: 2, failureWindowMs: 60_000, coolDownMs: 30_000 };

function recordingAudit(): AuditSink & { records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  return { records, append: (r) => void records.push(r), flush: async () => undefined, close: async () => undefined };
}

describe('ReportService: the report contract', () => {
  function setUp(store: EnforcementStore = new MemoryStore('charge')) {
    let now = T0;
    const audit = recordingAudit();
    const enforcer = new Enforcer({
      store,
      prices: PriceTable.default(),
      holdTtlMs: 600_000,
      retentionMs: 86_400_000,
      loopTtlMs: 3_600_000,
      sessionTtlMs: 86_400_000,
      partition: 'none',
      spendScopes: [],
      spendWindows: [],
      breaker: BREAKER,
    });
    const reports = new ReportService({ enforcer, audit, logger: silentLogger(), clock: () => now });
    const hold = async (): Promise<string> => {
      const holdId = randomUUID();
      const budgets = [{ scope: 'user:alice', window: 'day', slot: windowSlot('day', T0).id, limit: 10_000_000, expireAtMs: T0 + 2 * 86_400_000 }];
      const reserved = await store.reserve({ holdId, partition: '', nowMs: now, amount: 5_000, budgets, rates: [], holdTtlMs: 600_000, retentionMs: 86_400_000, meta: { model: 'gpt-4o-mini', tokens: 100 } });
      expect(reserved.outcome).toBe('reserved');
      return holdId;
    };
    const held = async () => (await store.balances('', [{ scope: 'user:alice', window: 'day', slot: windowSlot('day', T0).id }], now))[0]!;
    return { store, enforcer, reports, audit, hold, held, tick: (ms: number) => (now += ms) };
  }

  it('settles first, then records the provider outcome and returns its state', async () => {
    const { reports, hold, held } = setUp();
    const id = await hold();
    const result = await reports.report('test', { decision_id: id, provider: 'openai', upstream_status: 200, cost_usd: 0.002 });
    expect(result).toEqual({
      decision_id: id,
      outcome: 'settled',
      cost_usd: 0.002,
      held_usd: 0.005,
      late: false,
      provider_state: { provider: 'openai', state: 'closed', failures: 0, opened_at_ms: null, retry_at_ms: null, last_failure_at_ms: null, last_success_at_ms: T0 },
    });
    expect(await held()).toMatchObject({ spent: 2_000, held: 0 });
  });

  it('records health without settling when a failed report carries nothing to settle with', async () => {
    const { reports, hold, held } = setUp();
    const id = await hold();
    const result = await reports.report('test', { decision_id: id, provider: 'openai', outcome: 'timeout' });
    expect(result).toMatchObject({ decision_id: id, outcome: 'health_only', hold: 'not_settled', provider_state: { state: 'closed', failures: 1, last_failure_at_ms: T0 } });
    // The hold is untouched, and a later report with usage still settles it.
    expect(await held()).toMatchObject({ held: 5_000, holds: 1 });
    expect(await reports.report('test', { decision_id: id, cost_usd: 0.001, outcome: 'timeout' })).toMatchObject({ outcome: 'settled', cost_usd: 0.001 });
  });

  it('records health for a decision without a hold instead of answering hold_not_found', async () => {
    const { reports } = setUp();
    const result = await reports.report('test', { decision_id: 'never-reserved', provider: 'anthropic', upstream_status: 529, usage: { input_tokens: 10, output_tokens: 0 } });
    expect(result).toMatchObject({ outcome: 'health_only', hold: 'not_found', provider_state: { provider: 'anthropic', failures: 1 } });
    // Without a provider, or without a health signal, it is hold_not_found as before.
    await expect(reports.report('test', { decision_id: 'never-reserved', cost_usd: 0.1 })).rejects.toMatchObject({ code: 'hold_not_found' });
    await expect(reports.report('test', { decision_id: 'never-reserved', provider: 'anthropic', upstream_status: 400, cost_usd: 0.1 })).rejects.toMatchObject({ code: 'hold_not_found' });
  });

  it('records the usage of a decision that holds nothing for the spend ledger, and still answers hold_not_found', async () => {
    const { reports, audit } = setUp();
    await expect(reports.report('test', { decision_id: 'no-budget', model: 'gpt-4o-mini', usage: { input_tokens: 1000, output_tokens: 100 } })).rejects.toMatchObject({ code: 'hold_not_found' });
    await expect(reports.report('test', { decision_id: 'priced-by-gateway', cost_usd: 0.25 })).rejects.toMatchObject({ code: 'hold_not_found' });
    await expect(reports.report('test', { decision_id: 'no-usage', outcome: 'not_sent' })).rejects.toMatchObject({ code: 'hold_not_found' });
    await new Promise((resolve) => setImmediate(resolve));
    const recorded = audit.records.filter((r) => r.type === 'settlement' && r.hold === 'none');
    expect(recorded.map((r) => [r.decision_id, r.cost_usd])).toEqual([
      ['no-budget', Number(PriceTable.default().costMicroUsd('gpt-4o-mini', { input_tokens: 1000, output_tokens: 100, cached_input_tokens: 0 })) / 1e6],
      ['priced-by-gateway', 0.25],
    ]);
  });

  it('records nothing for a refused report or a repeated one', async () => {
    const { reports, enforcer, hold } = setUp();
    const id = await hold();
    // Unpriced model: refused after the hold was found; the provider outcome is not recorded.
    await expect(reports.report('test', { decision_id: id, provider: 'openai', upstream_status: 500, model: 'no-such-model', usage: { input_tokens: 1, output_tokens: 1 } })).rejects.toMatchObject({
      code: 'report_malformed',
    });
    expect(await enforcer.providerHealth(T0)).toEqual([]);
    const first = await reports.report('test', { decision_id: id, provider: 'openai', upstream_status: 500, cost_usd: 0.001 });
    expect(first).toMatchObject({ outcome: 'settled', provider_state: { failures: 1 } });
    const again = await reports.report('test', { decision_id: id, provider: 'openai', upstream_status: 500, cost_usd: 0.001 });
    expect(again).toEqual({ decision_id: id, outcome: 'already_settled', cost_usd: 0.001 });
    expect(await enforcer.providerHealth(T0)).toMatchObject([{ provider: 'openai', state: 'closed', failures: 1 }]);
  });

  it('audits each change of breaker state once, in the audit chain', async () => {
    const { reports, audit, tick } = setUp();
    const fail = () => reports.report('test', { decision_id: randomUUID(), provider: 'mistral', upstream_status: 503 });
    await fail();
    expect(audit.records.filter((r) => r.type === 'provider_health')).toHaveLength(0);
    await Promise.all([fail(), fail(), fail()]);
    tick(30_000);
    await reports.report('test', { decision_id: randomUUID(), provider: 'mistral', outcome: 'timeout' }); // half_open → open
    tick(30_000);
    await reports.report('test', { decision_id: randomUUID(), provider: 'mistral', upstream_status: 200 }); // half_open → closed
    const changes = audit.records.filter((r) => r.type === 'provider_health');
    expect(changes.map((r) => [r.from, r.to, r.reported])).toEqual([
      ['closed', 'open', 'failure'],
      ['half_open', 'open', 'failure'],
      ['half_open', 'closed', 'success'],
    ]);
    expect(changes[0]).toMatchObject({ provider: 'mistral', door: 'test', failures: 2, upstream_status: 503, retry_at: new Date(T0 + 30_000).toISOString() });
    expect(changes[1]).toMatchObject({ report_outcome: 'timeout', upstream_status: null, failures: 1 });
    expect(audit.records.some((r) => r.type === 'settlement')).toBe(false);
  });

  it('keeps a settlement when recording the health then fails (provider_state null)', async () => {
    const inner = new MemoryStore('charge');
    const flaky: EnforcementStore = {
      kind: 'memory',
      reserve: (r) => inner.reserve(r),
      settle: (s) => inner.settle(s),
      balances: (p, k, n) => inner.balances(p, k, n),
      listBudgets: (n) => inner.listBudgets(n),
      providerHealth: (n) => inner.providerHealth(n),
      recordProviderOutcome: async () => {
        throw new SignalboxError('budget_store_unavailable', 'the budget store (Redis) did not answer');
      },
      ping: () => inner.ping(),
      close: () => inner.close(),
    };
    const { reports, hold, audit } = setUp(flaky);
    const id = await hold();
    expect(await reports.report('test', { decision_id: id, provider: 'openai', upstream_status: 502, cost_usd: 0.003 })).toMatchObject({ outcome: 'settled', cost_usd: 0.003, provider_state: null });
    expect(audit.records.filter((r) => r.type === 'settlement')).toHaveLength(1);
    // A health-only report has nothing else to stand on: the store error is the answer.
    await expect(reports.report('test', { decision_id: id, provider: 'openai', outcome: 'timeout' })).rejects.toMatchObject({ code: 'budget_store_unavailable' });
  });

  it('exports the default breaker settings and refuses unusable ones', () => {
    expect(DEFAULT_BREAKER).toEqual({ failureThreshold: 3, failureWindowMs: 60_000, coolDownMs: 30_000 });
    expect(Object.isFrozen(DEFAULT_BREAKER)).toBe(true);
    for (const breaker of [{ ...DEFAULT_BREAKER, failureThreshold: 0 }, { ...DEFAULT_BREAKER, failureWindowMs: -1 }, { ...DEFAULT_BREAKER, coolDownMs: 1.5 }]) {
      expect(() => setUpWith(breaker)).toThrow(expect.objectContaining({ code: 'config_invalid' }));
    }
    function setUpWith(breaker: ProviderBreakerSettings): Enforcer {
      return new Enforcer({
        store: new MemoryStore('charge'),
        prices: PriceTable.default(),
        holdTtlMs: 1,
        retentionMs: 1,
        loopTtlMs: 1,
        sessionTtlMs: 1,
        partition: 'none',
        spendScopes: [],
        spendWindows: [],
        breaker,
      });
    }
  });
});

describe('provider reports over HTTP and gRPC', () => {
  let sb: TestSignalbox;
  let http: string;
  let client: grpc.Client & Record<string, (req: object, metadata: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Record<string, unknown>) => void) => void>;

  beforeAll(async () => {
    sb = await startTestSignalbox(capturedLogger().logger);
    http = `http://127.0.0.1:${sb.running.httpPort}`;
    client = new (loadServices().clients.DecisionService)(`127.0.0.1:${sb.running.grpcPort}`, grpc.credentials.createInsecure()) as unknown as typeof client;
  });

  afterAll(async () => {
    client?.close();
    await sb?.close();
  });

  const grpcReport = (req: object) => new Promise<Record<string, unknown>>((resolve, reject) => client.Report!(req, adminMetadata(), (e, r) => (e ? reject(e) : resolve(r))));

  async function httpReport(body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('opens the breaker after the default three failures, whichever door reports them', async () => {
    const first = await httpReport({ decision_id: randomUUID(), provider: 'openai', upstream_status: 503 });
    expect(first.status).toBe(200);
    expect(first.json).toMatchObject({ outcome: 'health_only', hold: 'not_settled', provider_state: { provider: 'openai', state: 'closed', failures: 1, opened_at_ms: null } });

    const second = await grpcReport({ decisionId: randomUUID(), provider: 'openai', outcome: 'timeout' });
    expect(second).toMatchObject({ outcome: 'health_only', hold: 'not_settled', providerState: { provider: 'openai', state: 'closed', failures: 2 } });
    expect((second.providerState as Record<string, unknown>).openedAtMs).toBeUndefined();

    // With usage but no hold for the decision: health_only, hold not_found.
    const third = await grpcReport({ decisionId: randomUUID(), provider: 'openai', upstreamStatus: 500, usage: { inputTokens: 12 } });
    expect(third).toMatchObject({ outcome: 'health_only', hold: 'not_found', costUsd: 0 });
    const state = third.providerState as Record<string, unknown>;
    expect(state).toMatchObject({ provider: 'openai', state: 'open', failures: 3 });
    expect(state.retryAtMs).toBe((state.openedAtMs as number) + 30_000);
    expect(await sb.running.enforcer.providerHealth(Date.now())).toMatchObject([{ provider: 'openai', state: 'open' }]);
  });

  it('maps an unset upstream_status to none, and a 4xx to no health signal', async () => {
    // No signal and no hold: hold_not_found, exactly as before providers existed.
    await expect(grpcReport({ decisionId: randomUUID(), provider: 'groq', upstreamStatus: 404, usage: { inputTokens: 1 } })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    // Unset upstreamStatus with outcome completed: a success.
    expect(await grpcReport({ decisionId: randomUUID(), provider: 'groq', usage: { inputTokens: 1 } })).toMatchObject({ outcome: 'health_only', hold: 'not_found', providerState: { state: 'closed', failures: 0 } });
    await expect(grpcReport({ decisionId: randomUUID(), provider: 'groq', upstreamStatus: 700 })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const bad = await httpReport({ decision_id: 'x', provider: 'bad\u0001name', outcome: 'timeout' });
    expect(bad).toMatchObject({ status: 400, json: { error: { code: 'report_malformed' } } });
  });

  it('audits the transition in the hash chain', async () => {
    await sb.running.audit.flush();
    const lines = (await readFile(sb.auditPath, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const changes = lines.filter((l) => l.type === 'provider_health');
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ provider: 'openai', from: 'closed', to: 'open', door: 'signalbox.v1.grpc', upstream_status: 500 });
    expect((await verifyAuditFile(sb.auditPath)).ok).toBe(true);
  });
});
