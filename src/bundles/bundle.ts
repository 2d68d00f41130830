/**
 * Reading OPA bundle tarballs (`opa build -t wasm` output): policy.wasm, data.json, .manifest.
 */
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createGunzip, createGzip } from 'node:zlib';
import { extract, pack } from 'tar-stream';
import { SignalboxError } from '../core/errors.js';
import type { BundleManifest, PolicyBundle } from '../policy/compiled.js';
import { verifyBundleSignature, type BundleVerificationConfig } from './signing.js';
import { isJsonObject } from '../core/json-object.js';

/** Bundles are built by us or by OPA users; anything bigger than this is refused as a likely zip bomb. */
const MAX_UNPACKED_BYTES = 256 * 1024 * 1024;

function normalise(name: string): string {
  const trimmed = name.replace(/^\.?\/+/, '');
  return `/${trimmed}`;
}

async function untar(gzipped: Buffer, source: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  let total = 0;
  const unpack = extract();
  const done = new Promise<void>((resolve, reject) => {
    unpack.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (data: unknown) => {
        const chunk = data as Buffer;
        total += chunk.length;
        if (total > MAX_UNPACKED_BYTES) {
          unpack.destroy(new SignalboxError('bundle_invalid', `bundle ${source} unpacks to more than ${MAX_UNPACKED_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      stream.on('end', () => {
        if (header.type === 'file') files.set(normalise(header.name), Buffer.concat(chunks));
        next();
      });
      stream.on('error', reject);
    });
    unpack.on('finish', resolve);
    unpack.on('error', reject);
  });
  const gunzip = createGunzip();
  gunzip.on('error', (error) => unpack.destroy(error));
  Readable.from([gzipped]).pipe(gunzip).pipe(unpack);
  try {
    await done;
  } catch (error) {
    if (error instanceof SignalboxError) throw error;
    throw new SignalboxError('bundle_unreadable', `bundle ${source} is not a gzip-compressed tar archive`, { cause: error });
  }
  return files;
}

function parseJson(bytes: Buffer, what: string, source: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new SignalboxError('bundle_invalid', `bundle ${source}: ${what} is not valid JSON`, { cause: error });
  }
}

function validateManifest(raw: unknown, source: string): BundleManifest {
  if (!isJsonObject(raw)) throw new SignalboxError('bundle_invalid', `bundle ${source}: .manifest is not a JSON object`);
  // OPA allows an empty revision; Signalbox's own builds always set a content-derived one.
  const revision = raw.revision ?? '';
  if (typeof revision !== 'string') throw new SignalboxError('bundle_invalid', `bundle ${source}: .manifest revision must be a string`);
  const roots = raw.roots === undefined ? [''] : raw.roots;
  if (!Array.isArray(roots) || !roots.every((r) => typeof r === 'string')) {
    throw new SignalboxError('bundle_invalid', `bundle ${source}: .manifest roots must be an array of strings`);
  }
  const wasm = raw.wasm;
  if (!Array.isArray(wasm) || wasm.length === 0) {
    throw new SignalboxError('bundle_invalid', `bundle ${source}: .manifest declares no wasm entrypoints (build it with "opa build -t wasm")`);
  }
  for (const entry of wasm) {
    if (!isJsonObject(entry) || typeof entry.entrypoint !== 'string' || typeof entry.module !== 'string') {
      throw new SignalboxError('bundle_invalid', `bundle ${source}: .manifest wasm entries need string "entrypoint" and "module"`);
    }
  }
  const modules = new Set(wasm.map((entry) => normalise((entry as { module: string }).module)));
  if (modules.size !== 1) {
    throw new SignalboxError('bundle_invalid', `bundle ${source}: all entrypoints must be in one wasm module (found ${modules.size})`);
  }
  return {
    revision,
    roots: roots as string[],
    wasm: (wasm as { entrypoint: string; module: string }[]).map((e) => ({ entrypoint: e.entrypoint, module: normalise(e.module) })),
    ...(isJsonObject(raw.metadata) ? { metadata: raw.metadata } : {}),
  };
}

/** Merges every `data.json` in the bundle at the path of its folder, as OPA does. */
function mergeData(files: ReadonlyMap<string, Buffer>, source: string): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  const dataFiles = [...files.keys()].filter((name) => name === '/data.json' || name.endsWith('/data.json')).sort();
  for (const name of dataFiles) {
    const value = parseJson(files.get(name) as Buffer, name, source);
    const segments = name.split('/').slice(1, -1);
    if (segments.length === 0) {
      if (!isJsonObject(value)) throw new SignalboxError('bundle_invalid', `bundle ${source}: /data.json must be a JSON object`);
      Object.assign(data, value);
      continue;
    }
    let node = data;
    for (const segment of segments.slice(0, -1)) {
      if (!isJsonObject(node[segment])) node[segment] = {};
      node = node[segment] as Record<string, unknown>;
    }
    node[segments[segments.length - 1] as string] = value;
  }
  return data;
}

/** Whether {@link readBundle} and {@link parseBundle} require a valid signature before reading anything else in a bundle. */
export interface ReadBundleOptions {
  /**
   * When set, the bundle must carry a `.signatures.json` that verifies against these keys and
   * covers every file (policy.verification); it is checked before anything else is parsed.
   */
  readonly verification?: BundleVerificationConfig | undefined;
}

/** Parses and validates a bundle tarball already in memory. */
export async function parseBundle(gzipped: Buffer, source: string, options: ReadBundleOptions = {}): Promise<PolicyBundle> {
  const files = await untar(gzipped, source);
  if (options.verification) await verifyBundleSignature(files, options.verification, source);
  const manifestBytes = files.get('/.manifest');
  if (!manifestBytes) throw new SignalboxError('bundle_invalid', `bundle ${source} has no .manifest`);
  const manifest = validateManifest(parseJson(manifestBytes, '.manifest', source), source);
  const modulePath = (manifest.wasm[0] as { module: string }).module;
  const wasm = files.get(modulePath);
  if (!wasm) throw new SignalboxError('bundle_invalid', `bundle ${source} has no ${modulePath}`);
  if (!files.has('/data.json')) throw new SignalboxError('bundle_invalid', `bundle ${source} has no data.json`);
  return { source, manifest, wasm: new Uint8Array(wasm), data: mergeData(files, source), files };
}

async function readArchive(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new SignalboxError('bundle_unreadable', `cannot read bundle ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
}

/** Reads and validates a bundle tarball from disk, verifying its signature when `options.verification` is set. */
export async function readBundle(path: string, options: ReadBundleOptions = {}): Promise<PolicyBundle> {
  return parseBundle(await readArchive(path), path, options);
}

/** Every file of a bundle tarball by normalised path ("/data.json"), unparsed and unverified. */
export async function readBundleFiles(path: string): Promise<Map<string, Buffer>> {
  return untar(await readArchive(path), path);
}

/** Writes files back into a gzipped tarball, in map order, with fixed modes and times so the bytes are reproducible. */
export async function packBundle(files: ReadonlyMap<string, Buffer>): Promise<Buffer> {
  const archive = pack();
  const gzipped = buffer(archive.pipe(createGzip()));
  for (const [name, bytes] of files) {
    await new Promise<void>((resolve, reject) => {
      archive.entry({ name: normalise(name), size: bytes.length, mode: 0o644, mtime: new Date(0), type: 'file' }, bytes, (error) => (error ? reject(error) : resolve()));
    });
  }
  archive.finalize();
  return gzipped;
}
