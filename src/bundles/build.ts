/**
 * Compiling Rego sources to OPA WASM bundles (`signalbox build`, `npm run build:policies`).
 *
 * Each folder under policies/ is one bundle: policies/signalbox → bundles/signalbox.tar.gz.
 * Entrypoints are declared once, in the Rego itself, with `# METADATA` / `# entrypoint: true`
 * annotations, which `opa build` reads; the engine checks the configured decision path against
 * the manifest the build writes.
 */
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { readdir, readFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { commitFile } from '../core/atomic-file.js';
import { SignalboxError } from '../core/errors.js';
import { pinnedOpaVersion } from '../core/paths.js';
import { packBundle, readBundle, readBundleFiles } from './bundle.js';
import { engineCapabilitiesFile } from './capabilities.js';
import { runOpa } from './opa-cli.js';
import { SIGNATURES_FILE, signBundleFiles, type BundleSigningOptions } from './signing.js';

/** Files that become part of a bundle: Rego modules and data documents, never Rego tests. */
function isBundleSource(path: string): boolean {
  if (path.endsWith('_test.rego')) return false;
  return path.endsWith('.rego') || basename(path) === 'data.json' || basename(path) === 'data.yaml';
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

/**
 * The content-derived revision of a policy folder: a hash of the pinned OPA version and every
 * bundle source file (path and bytes). The same sources always give the same revision, and any
 * change gives a new one, which is how a stale bundle is detected without rebuilding it.
 */
export async function sourceRevision(sourceDir: string): Promise<string> {
  const hash = createHash('sha256').update(`signalbox-bundle-v1\nopa ${pinnedOpaVersion()}\n`);
  for (const file of (await listFiles(sourceDir)).filter(isBundleSource)) {
    const rel = relative(sourceDir, file).split(sep).join('/');
    hash.update(`${rel}\0`).update(await readFile(file)).update('\0');
  }
  return hash.digest('hex').slice(0, 20);
}

/**
 * A bundle written by {@link buildBundle}: where it went, its content-derived revision, and the
 * entrypoints its manifest declares.
 */
export interface BuiltBundle {
  readonly output: string;
  readonly revision: string;
  readonly entrypoints: readonly string[];
}

/** Options of `signalbox build` beyond the folders: extra entrypoints, Rego v0 syntax, and signing. */
export interface BuildOptions {
  /** Entrypoints given on the command line (opa build -e), for policies without annotations. */
  readonly entrypoints?: readonly string[];
  /** Compile Rego v0 syntax (policies written for OPA before 1.0). */
  readonly v0Compatible?: boolean;
  /** Sign the bundle in OPA's format (`signalbox build --sign`). */
  readonly signing?: SigningOptions;
}

/** `signalbox build --signing-key PEM --signing-alg ALG --key-id ID --scope S`. */
export type SigningOptions = BundleSigningOptions & { readonly key: string };

/**
 * Adds `.signatures.json` to a built bundle, signed with our signer rather than `opa build
 * --signing-key`, so OPA verifying our output proves the signer interoperates; then verifies the
 * result with the matching public key before the bundle is published.
 */
async function signBuiltBundle(path: string, signing: SigningOptions): Promise<void> {
  const files = await readBundleFiles(path);
  files.delete(`/${SIGNATURES_FILE}`);
  files.set(`/${SIGNATURES_FILE}`, await signBundleFiles(files, signing));
  await writeFile(path, await packBundle(files));
  const publicKey = createPublicKey(createPrivateKey(signing.key)).export({ type: 'spki', format: 'pem' }).toString();
  await readBundle(path, {
    verification: {
      keys: { [signing.keyid ?? 'default']: { key: publicKey, algorithm: signing.algorithm } },
      keyid: signing.keyid ?? 'default',
      ...(signing.scope ? { scope: signing.scope } : {}),
    },
  });
}

/** Compiles one policy folder into a WASM bundle tarball at `output` (written atomically). */
export async function buildBundle(sourceDir: string, output: string, options: BuildOptions = {}): Promise<BuiltBundle> {
  const files = (await listFiles(sourceDir)).filter(isBundleSource);
  if (!files.some((f) => f.endsWith('.rego'))) {
    throw new SignalboxError('policy_build_failed', `${sourceDir} holds no .rego files`);
  }
  const revision = await sourceRevision(sourceDir);
  const { path: capabilities } = await engineCapabilitiesFile();
  await mkdir(join(output, '..'), { recursive: true });
  const partial = `${output}.partial-${process.pid}`;
  const args = ['build', '-t', 'wasm', '--capabilities', capabilities, '--revision', revision, '--ignore', '*_test.rego', '-o', partial];
  for (const entrypoint of options.entrypoints ?? []) args.push('-e', entrypoint);
  if (options.v0Compatible) args.push('--v0-compatible');
  const run = await runOpa([...args, '-b', '.'], { cwd: sourceDir });
  if (run.exitCode !== 0) {
    const detail = `${run.stdout}\n${run.stderr}`.trim();
    const unsupported = /undefined function ([\w.]+)/.exec(detail);
    if (unsupported) {
      throw new SignalboxError(
        'policy_unsupported_builtin',
        `${sourceDir}: the policy calls ${unsupported[1]}, which the WASM engine does not provide (README, "Policies and bundles", lists what it does):\n${detail}`,
        { details: { builtin: unsupported[1] } },
      );
    }
    if (/no entrypoints/i.test(detail) || /entrypoint/i.test(detail)) {
      throw new SignalboxError('policy_build_failed', `${sourceDir}: ${detail}\nDeclare the decision rule with "# METADATA" and "# entrypoint: true".`);
    }
    throw new SignalboxError('policy_build_failed', `opa build failed for ${sourceDir}:\n${detail}`);
  }
  if (options.signing) {
    try {
      await signBuiltBundle(partial, options.signing);
    } catch (error) {
      await rm(partial, { force: true });
      throw error;
    }
  }
  await commitFile(partial, output);
  const bundle = await readBundle(output);
  return { output, revision, entrypoints: bundle.manifest.wasm.map((w) => w.entrypoint) };
}

/** Builds every folder under `policiesDir` into `bundlesDir/<folder>.tar.gz`. */
export async function buildAllBundles(policiesDir: string, bundlesDir: string, options: Pick<BuildOptions, 'signing'> = {}): Promise<BuiltBundle[]> {
  const entries = await readdir(policiesDir, { withFileTypes: true });
  const built: BuiltBundle[] = [];
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => a.name.localeCompare(b.name))) {
    built.push(await buildBundle(join(policiesDir, entry.name), join(bundlesDir, `${entry.name}.tar.gz`), options));
  }
  return built;
}
