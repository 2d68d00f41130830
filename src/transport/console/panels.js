// One function per panel: fetch its data and render it. Each reports its own problem in its
// status line, so one endpoint failing (or not served, like the ledger when disabled) leaves the
// other panels working. Authentication failures are rethrown for main.js to ask for a token.
import { AuthError, MissingError, getJson } from './api.js';
import { drawSpendChart } from './chart.js';
import { el, fillRows, row, setStatus, usd, when } from './dom.js';

const $ = (selector) => document.querySelector(selector);

async function guarded(panel, render) {
  try {
    await render();
    setStatus(panel, '');
  } catch (error) {
    if (error instanceof AuthError) throw error;
    setStatus(panel, error instanceof MissingError ? 'not available on this server (is the ledger enabled?)' : `could not load: ${error.message}`, !(error instanceof MissingError));
  }
}

export function spend() {
  return guarded('spend', async () => {
    const by = $('#spend-by').value;
    const hours = Number($('#spend-since').value);
    const bucket = $('#spend-bucket').value;
    const since = new Date(Date.now() - hours * 3_600_000).toISOString();
    const [series, totals] = await Promise.all([getJson('/v1/ledger/report', { by, since, bucket }), getJson('/v1/ledger/report', { by, since })]);
    drawSpendChart($('#spend-chart'), series.rows);
    fillRows($('#spend-totals tbody'), totals.rows.map((r) => row([r.key, { value: usd(r.cost_usd), num: true }, { value: r.requests, num: true }, { value: r.input_tokens, num: true }, { value: r.output_tokens, num: true }])));
  });
}

export function budgets() {
  return guarded('budgets', async () => {
    const { budgets: list } = await getJson('/v1/spend');
    fillRows($('#budgets tbody'), list.map((b) => {
      const r = row([b.scope, b.window, b.period, { value: usd(b.limit_usd), num: true }, { value: usd(b.spent_usd), num: true }, { value: usd(b.held_usd), num: true }, { value: usd(b.remaining_usd), num: true }, { value: b.holds, num: true }]);
      r.dataset.scope = b.scope;
      r.dataset.window = b.window;
      return r;
    }));
    if (list.length === 0) setStatus('budgets', 'no budget counters yet');
  });
}

/** Shows one decision's masked audit record(s) below the denials. */
export async function showRecord(decisionId) {
  const section = $('#record');
  $('#record-id').textContent = decisionId;
  $('#record-body').textContent = 'loading…';
  section.hidden = false;
  try {
    const body = await getJson(`/v1/ledger/decisions/${encodeURIComponent(decisionId)}`);
    $('#record-body').textContent = JSON.stringify(body, null, 2);
  } catch (error) {
    if (error instanceof AuthError) throw error;
    $('#record-body').textContent = `could not load: ${error.message}`;
  }
  section.scrollIntoView({ block: 'nearest' });
}

export function denials() {
  return guarded('denials', async () => {
    const { denials: list } = await getJson('/v1/ledger/denials', { limit: 50 });
    fillRows($('#denials tbody'), list.map((d) => {
      const link = el('a', { href: `#decision/${encodeURIComponent(d.decision_id)}`, class: 'mono decision-link' }, [d.decision_id]);
      return row([when(d.time), link, d.door ?? '—', d.user ?? '—', d.team ?? '—', (d.reasons ?? []).join(', '), { value: d.http_status ?? '—', num: true }, el('span', { class: 'mono' }, [d.revision ?? '—'])]);
    }));
    if (list.length === 0) setStatus('denials', 'no denials recorded');
  });
}

export function providers() {
  return guarded('providers', async () => {
    const { providers: list } = await getJson('/v1/providers');
    fillRows($('#providers tbody'), list.map((p) => row([p.provider, el('span', { class: `state-${p.state}` }, [p.state]), { value: p.failures, num: true }, when(p.retry_at_ms)])));
    if (list.length === 0) setStatus('providers', 'no provider reported yet');
  });
}

export function policy() {
  return guarded('policy', async () => {
    const status = await getJson('/v1/policy/status');
    $('#policy-revision').textContent = status.revision;
    $('#policy-origin').textContent = status.origin;
    fillRows($('#policy tbody'), status.loads.map((e) => row([when(e.at), e.type === 'load' ? `load (${e.origin})` : 'download', e.type === 'load' ? e.result : e.outcome, el('span', { class: 'mono' }, [e.revision ?? '—'])])));
    if (status.loads.length === 0) setStatus('policy', 'no reloads since start');
  });
}

export function audit() {
  return guarded('audit', async () => {
    const status = await getJson('/v1/audit/status');
    const badge = $('#audit-state');
    badge.textContent = status.stale ? `${status.state} (verifying…)` : status.state;
    badge.className = `badge state-${status.state}`;
    $('#audit-records').textContent = String(status.records);
    $('#audit-checked').textContent = status.checked_at ? `${when(status.checked_at)} in ${status.duration_ms} ms` : '—';
    const brk = status.first_break;
    $('#audit-break').textContent = brk ? `${brk.file} line ${brk.line}: ${brk.problem}` : status.missing.length > 0 ? `missing: ${status.missing.join(', ')}` : 'none';
    if (status.detail) setStatus('audit', status.detail);
  });
}

export function ledger() {
  return guarded('ledger', async () => {
    const status = await getJson('/v1/ledger/status');
    $('#ledger-database').textContent = status.database;
    $('#ledger-rows').textContent = String(status.rows);
    $('#ledger-loaded').textContent = when(status.last_loaded_at);
    $('#ledger-lag').textContent = String(status.lag_records);
  });
}
