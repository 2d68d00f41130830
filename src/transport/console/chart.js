// Spend over time as a uPlot line chart (served locally from node_modules, see console-assets.ts):
// one series per key (team, user or model), one point per bucket.
import uPlot from './vendor/uPlot.esm.js';

const COLORS = ['#2e90fa', '#f79009', '#12b76a', '#ee46bc', '#7a5af8', '#f04438', '#15b79e', '#667085'];

/** A bucket as the API gives it (ISO string or epoch ms) in epoch seconds, uPlot's x unit. */
function seconds(bucket) {
  const ms = typeof bucket === 'number' ? bucket : Date.parse(bucket);
  return Math.floor(ms / 1000);
}

/**
 * Turns report rows `{key, bucket, cost_usd}` into uPlot's columns: sorted bucket times, and per
 * key its cost in each bucket (0 where it spent nothing).
 */
export function columns(rows) {
  const times = [...new Set(rows.map((r) => seconds(r.bucket)))].filter(Number.isFinite).sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const keys = [...new Set(rows.map((r) => String(r.key)))].sort();
  const series = new Map(keys.map((k) => [k, new Array(times.length).fill(0)]));
  for (const r of rows) {
    const i = index.get(seconds(r.bucket));
    if (i !== undefined) series.get(String(r.key))[i] += r.cost_usd;
  }
  return { times, keys, values: keys.map((k) => series.get(k)) };
}

let current;

/** Draws (or redraws) the chart into `container`. */
export function drawSpendChart(container, rows) {
  current?.destroy();
  current = undefined;
  container.replaceChildren();
  const { times, keys, values } = columns(rows);
  if (times.length === 0) return false;
  // Drawn while the panels may still be hidden (first load): then size from the window.
  const width = Math.max(320, container.clientWidth || document.documentElement.clientWidth - 90);
  // One bucket alone would stretch the time axis over years: show an hour either side.
  const range = times.length === 1 ? [times[0] - 3600, times[0] + 3600] : null;
  current = new uPlot(
    {
      width,
      height: 260,
      series: [{}, ...keys.map((key, i) => ({ label: key, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true, size: 6 }, value: (_u, v) => (v == null ? '—' : `$${v.toFixed(6)}`) }))],
      axes: [{}, { values: (_u, ticks) => ticks.map((t) => `$${t}`), size: 70 }],
      scales: { x: range ? { time: true, range } : { time: true } },
    },
    [times, ...values],
    container,
  );
  return true;
}
