/**
 * The capabilities file `opa build` compiles against: exactly the builtins the WASM engine can run.
 *
 * A builtin is runnable when OPA's WASM compiler implements it natively, or when the engine
 * provides it from the host (opa-wasm's JavaScript builtins and Signalbox's own). Instead of
 * keeping a hand-written list that drifts with every OPA release, we ask the pinned OPA: compile
 * one probe policy that calls every builtin, then read which builtins the module imports from the
 * host. Everything imported but not provided is left out, so a policy that calls it fails at
 * build time with OPA's "undefined function" error instead of failing at request time.
 */
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../core/atomic-file.js';
import { SignalboxError } from '../core/errors.js';
import { pinnedOpaVersion, projectRoot } from '../core/paths.js';
import { parseBundle } from './bundle.js';
import { ENGINE_PROVIDED_BUILTINS } from '../policy/builtins.js';
import { runOpa } from './opa-cli.js';

interface BuiltinDecl {
  name: string;
  decl?: { args?: unknown[]; variadic?: unknown; result?: unknown };
  infix?: string;
}

/** An OPA capabilities document: the builtins a policy may call, plus whatever else OPA puts in it, kept as is. */
export interface Capabilities {
  builtins: BuiltinDecl[];
  [key: string]: unknown;
}

/** Builtins the compiler rewrites or handles itself; they never reach the WASM import table. */
const COMPILER_HANDLED = new Set(['print', 'internal.print', 'eq', 'assign', 'equal', 'internal.member_2', 'internal.member_3']);

/** Returns the non-native builtins a compiled policy module imports from its host. */
export async function importedBuiltins(wasm: Uint8Array): Promise<string[]> {
  const module = await WebAssembly.compile(wasm);
  const memory = new WebAssembly.Memory({ initial: 5 });
  const env: Record<string, unknown> = { memory };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'env' && imp.kind === 'function') env[imp.name] = () => 0;
  }
  const instance = await WebAssembly.instantiate(module, { env: env as WebAssembly.ModuleImports });
  const exports = instance.exports as Record<string, (...args: number[]) => number>;
  const buffer = new Uint8Array(memory.buffer);
  const address = (exports.opa_json_dump as (a: number) => number)((exports.builtins as () => number)());
  let end = address;
  while (buffer[end] !== 0) end++;
  const table = JSON.parse(new TextDecoder().decode(buffer.subarray(address, end))) as Record<string, number>;
  return Object.keys(table).sort();
}

function probeModule(builtins: readonly BuiltinDecl[]): string {
  const lines = ['package signalbox_capabilities_probe', ''];
  const names: string[] = [];
  builtins.forEach((builtin, index) => {
    const arity = builtin.decl?.args?.length ?? 0;
    const args = Array.from({ length: arity }, (_, i) => `input.a${i}`);
    // The relation form f(args..., out) works for functions and relations (walk) alike, and
    // `input` operands type-check against any declared argument type.
    lines.push(`p${index} := [out | ${builtin.name}(${[...args, 'out'].join(', ')})]`);
    names.push(`p${index}`);
  });
  lines.push('', '# METADATA', '# entrypoint: true', `probe := [${names.join(', ')}]`, '');
  return lines.join('\n');
}

async function probeImports(capabilitiesFile: string, candidates: BuiltinDecl[], workDir: string): Promise<{ imported: Set<string>; rejected: Set<string> }> {
  const rejected = new Set<string>();
  for (let attempt = 0; attempt < 20; attempt++) {
    const usable = candidates.filter((b) => !rejected.has(b.name));
    const srcDir = join(workDir, `probe-src-${attempt}`);
    await mkdir(srcDir, { recursive: true });
    await writeFile(join(srcDir, 'probe.rego'), probeModule(usable));
    const out = join(workDir, `probe-${attempt}.tar.gz`);
    const run = await runOpa(['build', '-t', 'wasm', '--capabilities', capabilitiesFile, '-o', out, srcDir]);
    if (run.exitCode === 0) {
      const bundle = await parseBundle(await readFile(out), 'capabilities probe');
      return { imported: new Set(await importedBuiltins(bundle.wasm)), rejected };
    }
    // A builtin the WASM compiler refuses outright (for example one that needs a special
    // calling context) is unsupported; drop every one named in the errors and try again.
    const before = rejected.size;
    for (const line of `${run.stdout}\n${run.stderr}`.split('\n')) {
      const lineMatch = /probe\.rego:(\d+):/.exec(line);
      if (lineMatch) {
        const builtin = usable[Number(lineMatch[1]) - 3];
        if (builtin) rejected.add(builtin.name);
      }
    }
    if (rejected.size === before) {
      throw new SignalboxError('policy_build_failed', `capabilities probe failed to compile: ${`${run.stdout}${run.stderr}`.trim().slice(0, 2000)}`);
    }
  }
  throw new SignalboxError('policy_build_failed', 'capabilities probe did not converge');
}

/**
 * Computes (or reads from the cache in .tools/) the capabilities document for the pinned OPA and
 * this engine, and returns the path of a file holding it.
 */
export async function engineCapabilitiesFile(): Promise<{ path: string; capabilities: Capabilities }> {
  const version = pinnedOpaVersion();
  const key = createHash('sha256').update(`${version}\n${ENGINE_PROVIDED_BUILTINS.join(',')}`).digest('hex').slice(0, 16);
  const cacheDir = join(projectRoot(), '.tools', 'capabilities');
  const path = join(cacheDir, `opa-${version}-${key}.json`);
  if (existsSync(path)) return { path, capabilities: JSON.parse(await readFile(path, 'utf8')) as Capabilities };

  const current = await runOpa(['capabilities', '--current']);
  if (current.exitCode !== 0) throw new SignalboxError('policy_build_failed', `opa capabilities failed: ${current.stderr.trim()}`);
  const full = JSON.parse(current.stdout) as Capabilities;
  const workDir = await mkdtemp(join(tmpdir(), 'signalbox-caps-'));
  try {
    const fullFile = join(workDir, 'full.json');
    await writeFile(fullFile, JSON.stringify(full));
    // internal.* builtins are the compiler's own plumbing, never called by policies.
    const candidates = full.builtins.filter(
      (b) => !COMPILER_HANDLED.has(b.name) && !b.infix && !b.decl?.variadic && b.decl && !b.name.startsWith('internal.'),
    );
    const { imported, rejected } = await probeImports(fullFile, candidates, workDir);
    const provided = new Set(ENGINE_PROVIDED_BUILTINS);
    const probed = new Set(candidates.map((b) => b.name));
    const supported = full.builtins.filter((b) => {
      if (!probed.has(b.name)) return COMPILER_HANDLED.has(b.name) || Boolean(b.infix);
      if (rejected.has(b.name)) return false;
      return !imported.has(b.name) || provided.has(b.name);
    });
    const capabilities: Capabilities = { ...full, builtins: supported };
    // Written aside and renamed, so a concurrent build never reads a half-written file.
    await writeFileAtomic(path, `${JSON.stringify(capabilities, null, 1)}\n`);
    return { path, capabilities };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
