/**
 * Verifying a whole audit log: one file, or a directory holding a live file and its rotated
 * files. Each file must verify on its own, and each file started by rotation must continue
 * exactly where the file before it ends (its first record names that file, its last seq and its
 * last hash). A first file that continues one no longer there was left by retention.
 *
 * A directory written by several workers holds one such log per worker (worker-chains.ts): each
 * is verified as a chain of its own, and every worker file a `workers` record names must be
 * there, so the set is whole.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { verifyAuditFile, type ChainBreak, type VerifyReport } from './chain.js';
import { namedChains } from './worker-chains.js';

/** One chain of a directory: its live file's name and what verifying its files found. */
export interface ChainVerifyReport {
  /** The live file's name (the family of its rotated files). */
  readonly name: string;
  readonly ok: boolean;
  readonly files: readonly { readonly file: string; readonly report: VerifyReport }[];
  readonly records: number;
  readonly lastHash: string;
  /** The first break, and the file it is in. */
  readonly firstBreak?: ChainBreak & { readonly file: string };
  /** The first file continues one removed by retention (its name). */
  readonly startsAfter?: string;
}

/** What verifying a file or a directory found: the one chain, or each worker's. */
export interface LogVerifyReport {
  readonly ok: boolean;
  /** Every file verified, chain by chain. */
  readonly files: readonly { readonly file: string; readonly report: VerifyReport }[];
  readonly records: number;
  /** The last hash of the first chain (of the only one, without workers). */
  readonly lastHash: string;
  /** The first break, and the file it is in. */
  readonly firstBreak?: ChainBreak & { readonly file: string };
  /** The first file continues one removed by retention (its name), for a single chain. */
  readonly startsAfter?: string;
  /** Each chain, by name (one, without workers). */
  readonly chains: readonly ChainVerifyReport[];
  /** Worker files a `workers` record names that are not in the directory. */
  readonly missing: readonly string[];
}

const ROTATED = /^(.*)\.(\d{12})(\.[^.]+)$/;

/** The logs in `dir`, each as its files in chain order: rotated files by seq, then the live file. */
async function logFamilies(dir: string): Promise<Map<string, string[]>> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.jsonl'));
  const families = new Map<string, { name: string; seq: number }[]>();
  for (const name of names) {
    const match = ROTATED.exec(name);
    const family = match ? `${match[1]}${match[3]}` : name;
    const files = families.get(family) ?? [];
    // The live file sorts after every rotated one.
    files.push({ name, seq: match ? Number(match[2]) : Number.POSITIVE_INFINITY });
    families.set(family, files);
  }
  return new Map(
    [...families.keys()].sort().map((family) => [family, families.get(family)!.sort((a, b) => a.seq - b.seq).map((f) => join(dir, f.name))]),
  );
}

/** Verifies one log's files, in chain order. */
async function verifyChain(name: string, files: readonly string[]): Promise<ChainVerifyReport> {
  const verified: { file: string; report: VerifyReport }[] = [];
  let records = 0;
  let previous: { file: string; report: VerifyReport } | undefined;
  let startsAfter: string | undefined;
  for (const file of files) {
    const report = await verifyAuditFile(file);
    verified.push({ file, report });
    records += report.records;
    const result = (firstBreak: ChainBreak): ChainVerifyReport => ({ name, ok: false, files: verified, records, lastHash: report.lastHash, firstBreak: { ...firstBreak, file } });
    if (report.firstBreak) return result(report.firstBreak);
    if (previous) {
      const link = report.continues;
      const expected = { file: basename(previous.file), seq: previous.report.lastSeq, hash: previous.report.lastHash };
      if (!link || link.file !== expected.file || link.seq !== expected.seq || link.hash !== expected.hash) {
        return result({ line: 1, seq: link ? link.seq + 1 : null, problem: 'prev_hash_mismatch', detail: `does not continue ${expected.file} (seq ${expected.seq}): files missing, reordered or edited` });
      }
    } else if (report.continues) {
      startsAfter = report.continues.file;
    }
    previous = { file, report };
  }
  return { name, ok: true, files: verified, records, lastHash: previous?.report.lastHash ?? '', ...(startsAfter ? { startsAfter } : {}) };
}

/**
 * Verifies an audit file, or every log in a directory: each chain in order, and, for workers'
 * chains, that none the `workers` records name is missing.
 */
export async function verifyAuditLog(target: string): Promise<LogVerifyReport> {
  const isDir = (await stat(target)).isDirectory();
  const families = isDir ? await logFamilies(target) : new Map([[basename(target), [target]]]);
  const chains: ChainVerifyReport[] = [];
  for (const [name, files] of families) chains.push(await verifyChain(name, files));
  const named = isDir ? await namedChains([...families.values()].flat()) : new Set<string>();
  const missing = [...named].filter((name) => !families.has(name)).sort();
  const broken = chains.find((chain) => !chain.ok);
  const first = chains[0];
  return {
    ok: broken === undefined && missing.length === 0,
    files: chains.flatMap((chain) => chain.files),
    records: chains.reduce((sum, chain) => sum + chain.records, 0),
    lastHash: first?.lastHash ?? '',
    ...(broken?.firstBreak ? { firstBreak: broken.firstBreak } : {}),
    ...(chains.length === 1 && first?.startsAfter ? { startsAfter: first.startsAfter } : {}),
    chains,
    missing,
  };
}
