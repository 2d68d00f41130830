/**
 * `npm run build`: the `signalbox` command as one ESM bundle, dist/bundle/signalbox.js, with a
 * chunk per lazily loaded command or store (README "Build").
 *
 * Why a bundle and not tsc's file-per-module output: every module's source text stays in V8's
 * heap for as long as the process runs (lazy compilation reads it again), and a worker loaded
 * 4.6 MiB of it, comments, indentation and all of zod, grpc-js and yaml included. Bundled with
 * whitespace and syntax minified (not names: stack traces show each function's own name), the
 * same code is about 2.8 MiB on disk for every command, and a worker under the peer benchmark's
 * load peaks 5–8 MiB lower (README "Memory").
 *
 * - Built from the TypeScript sources with esbuild, the transform the test suite runs under tsx.
 *   Types are checked by `npm run typecheck` and the test command, not here.
 * - Dependencies are bundled, except pg and PGlite (loaded only for `ledger.database`): PGlite
 *   reads its WebAssembly and data files next to its own modules, and pg requires its optional
 *   native binding by name.
 * - A dependency that locates its own files through `__dirname` or `__filename` (grpc-js and
 *   @grpc/reflection read .proto files that way) is given the folder the file has in the
 *   installed package, found at run time through Node's resolution, so the bundle works wherever
 *   node_modules sits, hoisted or not.
 * - Source maps are written next to each file (`node --enable-source-maps` uses them); licence
 *   comments go to a .LEGAL.txt file beside the output that held them.
 * - Up to date is kept: when no input (source, dependency, this script, the lockfile) changed
 *   since the last build and none of its outputs is missing, they are left untouched, so
 *   `npm start` starts at once.
 *
 * Usage: `tsx scripts/bundle.ts [outdir]` (default dist/bundle).
 */
import { build, type Metafile, type Plugin } from 'esbuild';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where `npm run build` writes the bundle. */
const DEFAULT_OUTDIR = join(root, 'dist', 'bundle');

/** The file that records a build's inputs, so the next build can tell it is up to date. */
const INPUTS_FILE = 'inputs.json';

/** Packages left to Node's own loading (see the header). */
const EXTERNAL = ['@electric-sql/pglite', 'pg'];

/**
 * The start of every output file: `require` for the bundled CommonJS dependencies (an ES module
 * has none), and the helper that finds an installed package's folder for `__dirname`.
 */
const BANNER = [
  "import { createRequire as __signalboxCreateRequire } from 'node:module';",
  "import { existsSync as __signalboxExists } from 'node:fs';",
  "import { join as __signalboxJoin } from 'node:path';",
  'const require = __signalboxCreateRequire(import.meta.url);',
  'const __signalboxInstalled = (name, subpath) => {',
  "  for (const modules of require.resolve.paths(name) ?? []) if (__signalboxExists(__signalboxJoin(modules, name, 'package.json'))) return __signalboxJoin(modules, name, subpath);",
  '  throw new Error(`the installed package ${name} was not found`);',
  '};',
].join('\n');

/** A file inside node_modules as its package's name and the path within that package. */
function packagePath(file: string): { name: string; subpath: string } | undefined {
  const parts = file.split(sep);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0 || at + 1 >= parts.length) return undefined;
  const scoped = parts[at + 1]!.startsWith('@');
  const nameParts = parts.slice(at + 1, at + (scoped ? 3 : 2));
  return { name: nameParts.join('/'), subpath: parts.slice(at + 1 + nameParts.length).join('/') };
}

/** Gives dependencies that use `__dirname` or `__filename` their installed locations (see the header). */
const installedPaths: Plugin = {
  name: 'installed-paths',
  setup(builder) {
    builder.onLoad({ filter: /[\\/]node_modules[\\/].*\.[cm]?js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      if (!/\b__(?:dirname|filename)\b/.test(source)) return undefined;
      const location = packagePath(args.path);
      if (location === undefined) return undefined;
      const file = `__signalboxInstalled(${JSON.stringify(location.name)}, ${JSON.stringify(location.subpath)})`;
      const folder = `__signalboxInstalled(${JSON.stringify(location.name)}, ${JSON.stringify(dirname(location.subpath))})`;
      return { contents: `var __filename = ${file}, __dirname = ${folder};\n${source}`, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

/** What a build records about its inputs and outputs. */
interface BuildRecord {
  /** When the build started (ms since the epoch): an input modified after it makes the next build run. */
  readonly startedAt: number;
  /** Every file esbuild read, relative to the project root, plus this script, package.json and the lockfile. */
  readonly inputs: readonly string[];
  /** Every file the build wrote, relative to its output folder: one missing makes the next build run. */
  readonly outputs: readonly string[];
}

/** Whether `outdir` holds a whole build whose inputs are all unchanged since it ran. */
async function upToDate(outdir: string): Promise<boolean> {
  let record: BuildRecord;
  try {
    record = JSON.parse(await readFile(join(outdir, INPUTS_FILE), 'utf8')) as BuildRecord;
  } catch {
    return false;
  }
  // A record from another version of this script, or damaged: build.
  if (typeof record?.startedAt !== 'number' || !Array.isArray(record.inputs) || !Array.isArray(record.outputs)) return false;
  for (const input of record.inputs) {
    const modified = await stat(join(root, input)).then((s) => s.mtimeMs, () => Infinity);
    if (modified >= record.startedAt) return false;
  }
  for (const output of record.outputs) if (!existsSync(join(outdir, output))) return false;
  return true;
}

/** Every input of a build: what esbuild read, this script, package.json and the lockfile. */
function inputsOf(metafile: Metafile): string[] {
  const read = Object.keys(metafile.inputs).map((input) => relative(root, resolve(root, input)));
  return [...new Set([...read, relative(root, fileURLToPath(import.meta.url)), 'package-lock.json', 'package.json'])].sort();
}

/**
 * Builds the bundle into `outdir` unless it is up to date. The new build is written beside it
 * and moved into place, so a reader never sees half of one. Returns whether it built.
 */
export async function buildBundle(outdir: string = DEFAULT_OUTDIR): Promise<boolean> {
  if (await upToDate(outdir)) return false;
  const startedAt = Date.now();
  const staging = `${outdir}.building-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: { signalbox: join(root, 'src', 'cli', 'main.ts') },
    outdir: staging,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    entryNames: '[name]',
    chunkNames: 'chunks/[name]-[hash]',
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'linked',
    external: EXTERNAL,
    banner: { js: BANNER },
    plugins: [installedPaths],
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((output) => relative(staging, resolve(root, output)));
  const record: BuildRecord = { startedAt, inputs: inputsOf(result.metafile), outputs };
  await writeFile(join(staging, INPUTS_FILE), `${JSON.stringify(record, null, 1)}\n`);
  await mkdir(dirname(outdir), { recursive: true });
  const previous = `${outdir}.previous-${process.pid}`;
  if (existsSync(outdir)) await rename(outdir, previous);
  await rename(staging, outdir);
  await rm(previous, { recursive: true, force: true });
  return true;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outdir = process.argv[2] === undefined ? DEFAULT_OUTDIR : resolve(process.argv[2]);
  if (!(await buildBundle(outdir))) console.log(`${relative(process.cwd(), outdir)} is up to date`);
}
