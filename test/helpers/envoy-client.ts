/**
 * The Go client that speaks Envoy's APIs with Envoy's own generated types (test/envoy-client,
 * built by scripts/build-envoy-client.sh into .tools/bin/envoy-client): building it, running it,
 * and the documents of its `ext-proc` mode (test/envoy-client/extproc_io.go), where it plays
 * Envoy 1.40's ext_proc HTTP filter for one request in front of a real upstream.
 */
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { projectRoot } from '../../src/core/paths.js';

const root = projectRoot();
const client = join(root, '.tools', 'bin', 'envoy-client');

/** Builds (or confirms, when the sources did not change) the Go client. */
export async function buildEnvoyClient(): Promise<void> {
  await promisify(execFile)('bash', [join(root, 'scripts', 'build-envoy-client.sh')], { cwd: root, maxBuffer: 16 * 1024 * 1024 });
}

/** How one run of the client ended. */
export interface ClientRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the client with `args`, feeding `stdin`. */
export function runEnvoyClient(args: string[], stdin = ''): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(client, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/** The ext_proc filter settings the client models (the filter's own config, as in an Envoy YAML). */
export interface ExtProcFilter {
  readonly processing_mode: Record<string, string>;
  readonly allow_mode_override: boolean;
  readonly message_timeout: string;
}

/** The ext_proc filter's settings of an example Envoy config (its first ext_proc filter). */
export async function extProcFilterOf(example: string): Promise<ExtProcFilter> {
  const config = parse(await readFile(join(root, example), 'utf8')) as unknown;
  const found: Array<Record<string, unknown>> = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (typeof node === 'object' && node !== null) {
      const record = node as Record<string, unknown>;
      if (record.name === 'envoy.filters.http.ext_proc') found.push(record.typed_config as Record<string, unknown>);
      else Object.values(record).forEach(walk);
    }
  };
  walk(config);
  const filter = found[0];
  if (filter === undefined) throw new Error(`${example} has no envoy.filters.http.ext_proc filter`);
  return {
    processing_mode: filter.processing_mode as Record<string, string>,
    allow_mode_override: filter.allow_mode_override === true,
    message_timeout: String(filter.message_timeout ?? '200ms'),
  };
}

/** One downstream request through the client's ext_proc filter (extproc_io.go's input document). */
export interface ExtProcInput extends ExtProcFilter {
  readonly addr: string;
  readonly upstream: string;
  readonly request: {
    readonly method: string;
    readonly path: string;
    readonly authority?: string;
    readonly headers?: Record<string, string>;
    readonly body?: string;
  };
  readonly abort_after_response_chunks?: number;
}

/** A response or reply as the client saw it. */
export interface ImmediateView {
  status: number;
  headers: Record<string, string[]>;
  body: string;
  details?: string;
}

/** One message or stream event of the trace. */
export interface TraceEntry {
  dir: 'sent' | 'received' | 'stream';
  type: string;
  end_of_stream?: boolean;
  body_bytes?: number;
  status?: string;
  mode_override?: Record<string, string>;
  mode_override_applied?: boolean;
  body_mutation?: string;
  header_mutation?: boolean;
  detail?: string;
}

/** What happened (extproc_io.go's output document). */
export interface ExtProcOutput {
  client: { status: number; headers: Record<string, string[]>; body: string; chunks: string[]; reset: boolean };
  upstream: { method: string; path: string; headers: Record<string, string[]>; body: string } | null;
  immediate_response?: ImmediateView;
  local_reply?: ImmediateView;
  aborted: boolean;
  processor_closed_early?: boolean;
  trace: TraceEntry[];
  dynamic_metadata?: Array<{ response: string; metadata: unknown }>;
  header_mutation_warnings?: string[];
  error?: string;
}

/** Runs one request through the client's ext_proc filter; a protocol violation or a failed run throws, with the client's output. */
export async function runExtProc(input: ExtProcInput): Promise<ExtProcOutput> {
  const run = await runEnvoyClient(['ext-proc'], JSON.stringify(input));
  let output: ExtProcOutput | undefined;
  try {
    output = JSON.parse(run.stdout) as ExtProcOutput;
  } catch {
    output = undefined;
  }
  if (output === undefined || run.code !== 0 || output.error !== undefined) {
    throw new Error(`envoy-client ext-proc failed (exit ${run.code}): ${output?.error ?? ''}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
  return output;
}
