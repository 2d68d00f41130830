/**
 * npx tsx bench/detectors.ts: precision and recall of each content detector on the labelled
 * corpus (test/fixtures/content-corpus.jsonl), then scan and redaction throughput on a large
 * synthetic chat body. Exits 1 when the corpus is malformed.
 *
 * Settings: BENCH_BODY_MB (size of the synthetic body, default 8), BENCH_ROUNDS (default 5; the
 * median round is reported), BENCH_VERBOSE=1 (also list the corpus ids the detectors got wrong).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CorpusError, evaluateCorpus, parseCorpus, type DetectorScore } from '../src/inspect/content/evaluate.js';
import { redactBody } from '../src/inspect/content/redact.js';
import { scanBody } from '../src/inspect/content/scan.js';

const CORPUS = join(import.meta.dirname, '..', 'test', 'fixtures', 'content-corpus.jsonl');
const BODY_MB = Number(process.env.BENCH_BODY_MB ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

function loadCorpus(): ReturnType<typeof parseCorpus> {
  try {
    return parseCorpus(readFileSync(CORPUS, 'utf8'));
  } catch (error) {
    console.error(error instanceof CorpusError ? `malformed corpus: ${error.message}` : `cannot read ${CORPUS}: ${String(error)}`);
    process.exit(1);
  }
}

function row(s: DetectorScore): string {
  const pct = (x: number): string => x.toFixed(3);
  return `| ${s.type.padEnd(26)} | ${String(s.tp).padStart(4)} | ${String(s.fp).padStart(3)} | ${String(s.fn).padStart(3)} | ${pct(s.precision).padStart(9)} | ${pct(s.recall).padStart(6)} |`;
}

/** A chat body of about `mb` MB: long prose turns, tool calls with JSON arguments, a sprinkle of findings. */
function syntheticBody(mb: number): { body: unknown; bytes: number } {
  const prose =
    'The quarterly report covers revenue, churn and the roadmap for 2024-Q3. Build 1.22.2 shipped on ' +
    '2024-03-15T10:30:00Z to 10.0.4.21; see ticket PROJ-1234 and commit 3f9a2b7c1d4e5f60718293a4b5c6d7e8f9012345. ';
  const findings = [
    'Reach me at jane.doe@example.com or (415) 555-0132.',
    'Card 4111 1111 1111 1111 exp 12/27.',
    'IBAN DE89 3704 0044 0532 0130 00.',
    'key AKIAIOSFODNN7EXAMPLE',
  ];
  const messages: unknown[] = [{ role: 'system', content: 'You are a helpful assistant. '.repeat(20) }];
  let bytes = 0;
  for (let i = 0; bytes < mb * 1024 * 1024; i++) {
    const text = prose.repeat(40) + (findings[i % findings.length] as string);
    messages.push({ role: 'user', content: [{ type: 'text', text }] });
    messages.push({
      role: 'assistant',
      content: null,
      tool_calls: [{ id: `call_${i}`, type: 'function', function: { name: 'search', arguments: JSON.stringify({ query: prose.repeat(4), page: i, url: 'https://example.com/docs' }) } }],
    });
    messages.push({ role: 'tool', tool_call_id: `call_${i}`, content: JSON.stringify({ results: [prose.repeat(8), prose.repeat(8)] }) });
    bytes += text.length + prose.length * 21;
  }
  const body = { model: 'gpt-4o', messages };
  return { body, bytes: Buffer.byteLength(JSON.stringify(body)) };
}

function medianMs(run: () => void): number {
  run(); // warm-up
  const times: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] as number;
}

const entries = loadCorpus();
const evaluation = evaluateCorpus(entries);
const positives = entries.filter((e) => e.expect.length > 0).length;
console.log(`corpus: ${entries.length} snippets (${positives} with findings, ${entries.length - positives} negatives)\n`);
console.log('| type                       |   TP |  FP |  FN | precision | recall |');
console.log('| -------------------------- | ---- | --- | --- | --------- | ------ |');
for (const s of evaluation.byType) console.log(row(s));
console.log(row(evaluation.overall));
if (process.env.BENCH_VERBOSE === '1') {
  console.log('\ndisagreements (id, type, expected, got):');
  for (const d of evaluation.disagreements) console.log(`  ${d.id} ${d.type} ${d.expected} ${d.got}`);
}

const { body, bytes } = syntheticBody(BODY_MB);
let findings = 0;
const scanMs = medianMs(() => {
  findings = scanBody(body).findings.length;
});
const redactMs = medianMs(() => {
  redactBody(body);
});
const mb = bytes / (1024 * 1024);
console.log(`\nsynthetic chat body: ${mb.toFixed(1)} MB, ${findings} (type, path) findings`);
console.log(`scanBody:   ${scanMs.toFixed(0)} ms, ${(mb / (scanMs / 1000)).toFixed(1)} MB/s (median of ${ROUNDS})`);
console.log(`redactBody: ${redactMs.toFixed(0)} ms, ${(mb / (redactMs / 1000)).toFixed(1)} MB/s (median of ${ROUNDS})`);
