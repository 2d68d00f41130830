/**
 * `signalbox eval`: one request decided (a full input, or the short form through the service's
 * pipeline) and explained.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { SignalboxError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { explainDecision, readRequestFile, textExplain } from '../testing/explain.js';
import { parseRfc3339Ns } from '../testing/simulate.js';
import type { ExplainMode } from '../testing/topdown.js';
import { UsageError, outputFormat, print } from './command.js';

const EXPLAIN_MODES: readonly ExplainMode[] = ['rules', 'notes', 'fails', 'full'];

/**
 * `signalbox eval (--input FILE | --request FILE)`: decides one request at `--now` (default: the
 * wall clock) and prints the report, as text on a terminal and JSON when piped. Returns 0
 * whatever the decision: a deny is what it shows.
 */
export async function evaluate(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      input: { type: 'string' },
      request: { type: 'string' },
      config: { type: 'string' },
      bundle: { type: 'string' },
      decision: { type: 'string' },
      now: { type: 'string' },
      explain: { type: 'string' },
      src: { type: 'string' },
      format: { type: 'string' },
    },
    strict: true,
  });
  if ((values.input === undefined) === (values.request === undefined)) throw new UsageError('eval needs --input FILE (a full input) or --request FILE (the short form)');
  if (values.explain !== undefined && !EXPLAIN_MODES.includes(values.explain as ExplainMode)) {
    throw new UsageError(`--explain must be one of ${EXPLAIN_MODES.join(', ')}`);
  }
  const format = outputFormat(values.format, ['text', 'json'], process.stdout.isTTY ? 'text' : 'json');
  const config = loadConfig(values.config ?? process.env.SIGNALBOX_CONFIG);
  let input: unknown;
  if (values.input !== undefined) {
    try {
      input = JSON.parse(await readFile(values.input, 'utf8'));
    } catch (error) {
      throw new SignalboxError('request_malformed', `--input ${values.input} is not a readable JSON document`, { cause: error });
    }
  }
  const request = values.request !== undefined ? await readRequestFile(values.request) : undefined;
  let nowNs = BigInt(Date.now()) * 1_000_000n;
  if (values.now !== undefined) {
    try {
      nowNs = parseRfc3339Ns(values.now);
    } catch {
      throw new UsageError(`--now ${values.now} is not an RFC 3339 timestamp (2026-11-22T10:00:00Z)`);
    }
  }
  const report = await explainDecision({
    config,
    // stderr, errors only: stdout is the report, and a fail-closed decision is what eval shows.
    logger: createLogger('error', process.stderr),
    ...(input !== undefined ? { input } : {}),
    ...(request ? { request } : {}),
    ...(values.bundle ? { bundle: values.bundle } : {}),
    ...(values.decision ? { decision: values.decision } : {}),
    nowNs,
    ...(values.explain ? { explain: values.explain as ExplainMode } : {}),
    ...(values.src ? { src: resolve(values.src) } : {}),
  });
  if (format === 'json') print(report);
  else process.stdout.write(textExplain(report));
  return 0;
}
