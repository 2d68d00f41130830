/**
 * The management console (/console/) in a real headless Chromium (Debian's, driven by
 * playwright-core) against a real Signalbox with real traffic: decisions allowed and denied,
 * usage reports settling spend for several teams and users, a hold left open, and a provider
 * breaker opened by failed reports. The page must show the API's numbers exactly, render under
 * its strict Content-Security-Policy without a violation, and never show a secret (the admin
 * token, prompt text). The shell is public; every data endpoint refuses without the credential;
 * nothing outside the asset allow-list is served.
 *
 * SIGNALBOX_UPDATE_DOCS=1 writes the screenshots to docs/ (the README shows docs/console.png).
 */
import { request as httpRequest } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/core/paths.js';
import { launchChromium } from './helpers/browser.js';
import { JwksServer, mint, signingKey, type SigningKey } from './helpers/keys.js';
import { capturedLogger } from './helpers/logs.js';
import { ADMIN_HEADERS, ADMIN_TOKEN, checkRequest, startTestSignalbox, type CheckResponse, type TestSignalbox } from './helpers/signalbox.js';

/** Prompt text that must never reach the page (the audit trail masks it). */
const SECRET_PROMPT = 'the launch code is PURPLE-ELEPHANT-4471';

function chatBody(model = 'gpt-4o-mini'): string {
  return JSON.stringify({ model, max_tokens: 200, messages: [{ role: 'user', content: SECRET_PROMPT }] });
}

function decisionId(response: CheckResponse): string {
  const id = response.dynamicMetadata?.fields?.decision_id?.stringValue;
  if (!id) throw new Error('no decision_id in the Check answer');
  return id;
}

/** What the page shows for an amount (dom.js `usd`), parsed back to integer micro-dollars. */
function microOfText(text: string): number {
  const match = /^\$(-?\d+\.\d+)$/.exec(text.trim());
  if (!match) throw new Error(`not an amount: ${JSON.stringify(text)}`);
  return Math.round(Number(match[1]) * 1e6);
}

const micro = (usd: number): number => Math.round(usd * 1e6);

/** A GET with the path sent exactly as written (fetch would normalise `..` away). */
function rawGet(port: number, path: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A table's rows as shown: each row's cells' text, and its `data-scope`/`data-window`. */
async function tableRows(page: Page, selector: string): Promise<Array<{ scope: string | null; window: string | null; cells: string[] }>> {
  const rows = [];
  for (const tr of await page.locator(selector).all()) {
    rows.push({ scope: await tr.getAttribute('data-scope'), window: await tr.getAttribute('data-window'), cells: await tr.locator('td').allTextContents() });
  }
  return rows;
}

describe('management console', () => {
  let key: SigningKey;
  let jwks: JwksServer;
  let sb: TestSignalbox;
  let http: string;
  let browser: Browser;
  const logs = capturedLogger();
  const denied: string[] = [];
  /** The costs reported, by team, in micro-USD. */
  const reported = new Map<string, number>();

  async function chat(subject: string, team: string, model?: string): Promise<CheckResponse> {
    const token = await mint(key, { subject, claims: { team } });
    return sb.check(checkRequest({ body: chatBody(model), token }));
  }

  async function report(body: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${http}/v1/report`, { method: 'POST', headers: { 'content-type': 'application/json', ...ADMIN_HEADERS }, body: JSON.stringify(body) });
    expect(res.status, await res.clone().text()).toBe(200);
  }

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${http}${path}`, { headers: ADMIN_HEADERS });
    expect(res.status, path).toBe(200);
    return (await res.json()) as T;
  }

  beforeAll(async () => {
    key = await signingKey('ES256', 'console');
    jwks = await JwksServer.start([key.publicJwk]);
    const ledgerDir = await mkdtemp(join(tmpdir(), 'signalbox-console-ledger-'));
    sb = await startTestSignalbox(logs.logger, { jwksUrl: jwks.url, yaml: `routing:\n  breaker:\n    failure_threshold: 2\nledger:\n  enabled: true\n  dir: ${ledgerDir}\n  poll_ms: 100\n` });
    http = `http://127.0.0.1:${sb.running.httpPort}`;
    browser = await launchChromium();

    // Settled spend for two teams and three users.
    const traffic: Array<[string, string, number]> = [
      ['alice', 'search', 0.123456],
      ['alice', 'search', 0.5],
      ['bob', 'search', 0.25],
      ['carol', 'billing', 1.010101],
    ];
    for (const [user, team, cost] of traffic) {
      const answer = await chat(user, team);
      expect(answer.status.code).toBe(0);
      await report({ decision_id: decisionId(answer), cost_usd: cost, model: 'gpt-4o-mini' });
      reported.set(team, (reported.get(team) ?? 0) + micro(cost));
    }
    // A hold left open: held, not spent.
    expect((await chat('dave', 'billing')).status.code).toBe(0);
    // Denied: a model the llm-user role may not use.
    const refused = await chat('erin', 'search', 'o1-pro');
    expect(refused.status.code).not.toBe(0);
    denied.push(decisionId(refused));
    // Two failed calls to one provider open its breaker (failure_threshold: 2).
    for (let i = 0; i < 2; i++) {
      const answer = await chat('frank', 'billing');
      await report({ decision_id: decisionId(answer), outcome: 'failed', provider: 'azure-east', upstream_status: 503 });
    }
    // The ledger loads the audit trail in the background: wait until it holds every settlement.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { rows } = await api<{ rows: Array<{ key: string; cost_micro_usd: number }> }>('/v1/ledger/report?by=team');
      const denials = await api<{ denials: Array<{ decision_id: string }> }>('/v1/ledger/denials?limit=50');
      const loaded = [...reported].every(([team, total]) => rows.find((r) => r.key === team)?.cost_micro_usd === total);
      if (loaded && denials.denials.some((d) => d.decision_id === denied[0])) break;
      if (Date.now() > deadline) throw new Error(`the ledger did not load the traffic: ${JSON.stringify(rows)}`);
      await new Promise((done) => setTimeout(done, 100));
    }
  });

  afterAll(async () => {
    await browser?.close();
    await sb?.close();
    await jwks?.close();
  });

  it('serves a public shell with a strict CSP, and refuses its data without the admin credential', async () => {
    const shell = await fetch(`${http}/console/`);
    expect(shell.status).toBe(200);
    expect(shell.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = shell.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(shell.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await shell.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toContain('search'); // no data in the shell
    const redirect = await fetch(`${http}/console`, { redirect: 'manual' });
    expect(redirect.status).toBe(301);
    expect(redirect.headers.get('location')).toBe('/console/');

    for (const path of ['/v1/policy/status', '/v1/audit/status', '/v1/spend']) {
      const refused = await fetch(`${http}${path}`);
      expect(refused.status, path).toBe(401);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('admin_unauthenticated');
      const wrong = await fetch(`${http}${path}`, { headers: { authorization: 'Bearer not-the-token' } });
      expect(wrong.status, path).toBe(401);
      const allowed = await fetch(`${http}${path}`, { headers: ADMIN_HEADERS });
      expect(allowed.status, path).toBe(200);
      expect(allowed.headers.get('cache-control'), path).toBe('no-store');
    }
  });

  it('serves only the files on its allow-list: no listing, no way out of the folder', async () => {
    const port = sb.running.httpPort;
    const uplot = await rawGet(port, '/console/vendor/uPlot.esm.js');
    expect(uplot.status).toBe(200);
    expect(uplot.headers['content-type']).toBe('text/javascript; charset=utf-8');
    for (const path of [
      '/console/vendor/',
      '/console/vendor/uPlot.cjs.js',
      '/console/vendor/../../package.json',
      '/console/../package.json',
      '/console/%2e%2e/%2e%2e/package.json',
      '/console/..%2f..%2fpackage.json',
      '/console/vendor/..%2f..%2f..%2fpackage.json',
      '/console/index.html/',
      '/console/main.js%00.css',
      '/console//etc/passwd',
      '/console/console.ts',
    ]) {
      const answer = await rawGet(port, path);
      expect(answer.status, path).toBe(404);
      expect(answer.body, path).not.toContain('"name"');
    }
  });

  it('asks for the token, then shows budgets, breakers, policy and audit status exactly as the API reports them', async () => {
    const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' && !/status of 40[14]/.test(message.text())) problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    await page.goto(`${http}/console/`);
    await page.waitForSelector('#login:not([hidden])');

    // A wrong token is refused and asked again.
    await page.fill('#token', 'not-the-token');
    await page.click('#login button[type=submit]');
    await page.locator('#login-error', { hasText: 'check the token' }).waitFor();

    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#panels:not([hidden])');
    await page.waitForSelector('body[data-loaded]');

    const { budgets } = await api<{ budgets: Array<{ scope: string; window: string; spent_usd: number; held_usd: number; remaining_usd: number; limit_usd: number }> }>('/v1/spend');
    expect(budgets.length).toBeGreaterThan(3);
    const rows = await tableRows(page, '#budgets tbody tr');
    expect(rows).toHaveLength(budgets.length);
    for (const budget of budgets) {
      const shown = rows.find((r) => r.scope === budget.scope && r.window === budget.window);
      expect(shown, `${budget.scope}/${budget.window}`).toBeDefined();
      const [limit, spent, held, remaining] = shown!.cells.slice(3, 7).map(microOfText);
      expect({ limit, spent, held, remaining }).toEqual({ limit: micro(budget.limit_usd), spent: micro(budget.spent_usd), held: micro(budget.held_usd), remaining: micro(budget.remaining_usd) });
    }
    // The teams' spend counters are what was reported, to the micro-dollar.
    for (const [team, total] of reported) {
      const month = rows.find((r) => r.scope === `team:${team}` && r.window === 'month');
      expect(month, `team:${team}`).toBeDefined();
      expect(microOfText(month!.cells[4]!)).toBe(total);
    }

    const providers = await tableRows(page, '#providers tbody tr');
    expect(providers.map((r) => r.cells.slice(0, 2))).toContainEqual(['azure-east', 'open']);

    const ready = (await (await fetch(`${http}/ready`)).json()) as { revision: string };
    expect(await page.textContent('#policy-revision')).toBe(ready.revision);
    await page.locator('#audit-state', { hasText: /^intact$/ }).waitFor();
    const audit = await api<{ records: number }>('/v1/audit/status');
    expect(Number(await page.textContent('#audit-records'))).toBe(audit.records);
    expect(audit.records).toBeGreaterThan(8);

    // Spend per team: the page's totals are the ledger's, which are what was reported.
    const report = await api<{ rows: Array<{ key: string; cost_micro_usd: number; requests: number }> }>('/v1/ledger/report?by=team');
    const totals = await tableRows(page, '#spend-totals tbody tr');
    for (const [team, total] of reported) {
      const shown = totals.find((r) => r.cells[0] === team);
      expect(shown, team).toBeDefined();
      expect(microOfText(shown!.cells[1]!)).toBe(report.rows.find((r) => r.key === team)!.cost_micro_usd);
      expect(microOfText(shown!.cells[1]!)).toBe(total);
    }
    // The chart drew: a canvas with painted pixels.
    const painted = await page.evaluate(`(() => {
      const canvas = document.querySelector('#spend-chart canvas');
      if (!canvas || canvas.width === 0) return 0;
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      return n;
    })()`);
    expect(painted).toBeGreaterThan(100);

    // The denial is listed with its reasons, and its link opens the masked audit record.
    const denialRows = await tableRows(page, '#denials tbody tr');
    const listed = denialRows.find((r) => r.cells[1] === denied[0]);
    expect(listed, 'the denied decision').toBeDefined();
    expect(listed!.cells[5]).not.toBe('');
    await page.click(`#denials a.decision-link:text-is("${denied[0]}")`);
    await page.locator('#record-body', { hasText: denied[0]! }).waitFor();
    expect(await page.textContent('#record-id')).toBe(denied[0]);

    // Nothing secret on the page: not the token (cleared from the field), not the prompt.
    const content = await page.content();
    expect(content).not.toContain(ADMIN_TOKEN);
    expect(content).not.toContain('PURPLE-ELEPHANT');
    expect(await page.inputValue('#token')).toBe('');
    expect(problems).toEqual([]);

    const shot = await page.screenshot({ fullPage: true });
    expect(shot.length).toBeGreaterThan(10_000);
    const dir = process.env.SIGNALBOX_UPDATE_DOCS === '1' ? join(projectRoot(), 'docs') : await mkdtemp(join(tmpdir(), 'signalbox-console-'));
    await writeFile(join(dir, 'console.png'), shot);
    await page.close();
  });
});
