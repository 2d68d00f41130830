/**
 * policy.dry_run: a policy denial is audited and logged as a denial, but the request passes.
 * Errors and enforcement (rate limits here) still deny, and a pass never carries identity.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestBundle } from './helpers/bundles.js';
import { capturedLogger } from './helpers/logs.js';
import { checkRequest, headerValue, startTestSignalbox, type TestSignalbox } from './helpers/signalbox.js';

const POLICY = `package dryrun

# METADATA
# entrypoint: true
decision := {"allowed": false, "http_status": 409, "reasons": ["rollout.would_deny"]} if {
	input.parsed_path[0] == "deny"
} else := {"allowed": true, "rate_limits": [{"scope": "user:limited", "requests_per_minute": 1}]} if {
	input.parsed_path[0] == "limited"
} else := {"allowed": true, "not_a_result_key": 1} if {
	input.parsed_path[0] == "invalid"
} else := {"allowed": true, "headers": {"x-signalbox-user": "alice"}, "reasons": ["ok"]}
`;

interface AuditRecord {
  decision_id: string;
  decision: { allowed: boolean; http_status: number; reasons: string[]; dry_run?: boolean };
  bundles: { signalbox: { revision: string } };
}

describe('dry-run', () => {
  let sb: TestSignalbox;
  const logs = capturedLogger('info');

  beforeAll(async () => {
    const bundle = await buildTestBundle(POLICY);
    sb = await startTestSignalbox(logs.logger, { bundle, decision: 'dryrun/decision', yaml: 'policy:\n  dry_run: true\n' });
  });
  afterAll(async () => {
    await sb.close();
  });

  async function auditFor(decisionId: string): Promise<AuditRecord> {
    await sb.running.audit.flush();
    const records = (await readFile(sb.auditPath, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as AuditRecord);
    const record = records.find((r) => r.decision_id === decisionId);
    expect(record, `audit record for ${decisionId}`).toBeDefined();
    return record!;
  }

  function decisionIdOf(response: { dynamicMetadata?: { fields?: Record<string, { stringValue?: string }> } }): string {
    const id = response.dynamicMetadata?.fields?.decision_id?.stringValue;
    expect(id).toBeTruthy();
    return id!;
  }

  it('lets a policy denial pass, audits it as a denial and logs it', async () => {
    const response = await sb.check(
      checkRequest({
        path: '/deny',
        token: 'not-a-valid-token',
        headers: { 'x-signalbox-user': 'forged', 'x-signalbox-provider': 'evil', 'x-api-key': 'caller-key', 'x-signalbox-decision-id': 'forged-id' },
      }),
    );
    expect(response.status.code ?? 0).toBe(0);
    // Nothing the policy never vouched for reaches the upstream: the caller's copies are removed, none are set,
    // and the caller's token and credential headers are removed as an allow would.
    expect(response.okResponse?.headersToRemove).toEqual(expect.arrayContaining(['x-signalbox-user', 'x-signalbox-provider', 'authorization', 'x-api-key']));
    expect(headerValue(response.okResponse?.headers, 'x-signalbox-user')).toBeUndefined();
    // The real decision id replaces a caller's copy; it is not also removed.
    expect(response.okResponse?.headersToRemove).not.toContain('x-signalbox-decision-id');
    expect(headerValue(response.okResponse?.headers, 'x-signalbox-decision-id')).toBe(response.dynamicMetadata?.fields?.decision_id?.stringValue);
    expect(response.dynamicMetadata?.fields?.dry_run).toBeDefined();
    expect(response.dynamicMetadata?.fields?.policy_revision?.stringValue).toBe(sb.running.engine.revision);
    const id = decisionIdOf(response);
    const record = await auditFor(id);
    expect(record.decision).toEqual({ allowed: false, http_status: 409, reasons: ['rollout.would_deny'], dry_run: true });
    expect(record.bundles.signalbox.revision).toBe(sb.running.engine.revision);
    const line = logs.lines().find((l) => l.msg === 'dry-run: policy denial not enforced' && l.decision_id === id);
    expect(line).toMatchObject({ http_status: 409, reasons: ['rollout.would_deny'] });
  });

  it('leaves allowed decisions as they are', async () => {
    const response = await sb.check(checkRequest({ path: '/ok' }));
    expect(response.status.code ?? 0).toBe(0);
    expect(headerValue(response.okResponse?.headers, 'x-signalbox-user')).toBe('alice');
    const record = await auditFor(decisionIdOf(response));
    expect(record.decision).toEqual({ allowed: true, http_status: 200, reasons: ['ok'] });
  });

  it('still enforces rate limits after a policy allow', async () => {
    const first = await sb.check(checkRequest({ path: '/limited' }));
    expect(first.status.code ?? 0).toBe(0);
    const second = await sb.check(checkRequest({ path: '/limited' }));
    expect(second.status.code).toBe(7);
    expect(second.deniedResponse?.status?.code).toBe(429);
    const record = await auditFor(decisionIdOf(second));
    expect(record.decision.allowed).toBe(false);
    expect(record.decision.dry_run).toBeUndefined();
  });

  it('never lets an error pass', async () => {
    const response = await sb.check(checkRequest({ path: '/invalid' }));
    expect(response.status.code).toBe(7);
    const record = await auditFor(decisionIdOf(response));
    expect(record.decision).toMatchObject({ allowed: false, reasons: ['policy_result_invalid'] });
    expect(record.decision.dry_run).toBeUndefined();
  });

  it('counts dry-run denials apart in /metrics', async () => {
    const text = await (await fetch(`http://127.0.0.1:${sb.running.httpPort}/metrics`)).text();
    expect(text).toMatch(/signalbox_decisions_total\{door="envoy\.ext_authz\.grpc",result="dry_run_denied",reason="rollout\.would_deny"\} 1/);
  });

  it('warns at start-up that denials are not enforced', () => {
    expect(logs.lines().some((l) => l.msg === 'dry-run: policy denials are logged and audited but not enforced')).toBe(true);
  });
});
