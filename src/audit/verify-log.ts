/**
 * Verifying a whole audit log: one file, or a directory holding a live file and its rotated
 * files. Each file must verify on its own, and each file started by rotation must continue
 * exactly where the file before it ends (its first record names that file, its last seq and its
 * last hash). A first file that continues one no longer there was left by retention.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { verifyAuditFile, type ChainBreak, type VerifyReport } from './chain.js';

/** What verifying a log found, file by file. */
export interface LogVerifyReport {
  readonly ok: boolean;
  readonly files: readonly { readonly file: string; readonly report: VerifyReport }[];
  readonly records: number;
  readonly lastHash: string;
  /** The first break, and the file it is in. */
  readonly firstBreak?: ChainBreak & { readonly file: string };
  /** The first file continues one removed by retention (its name). */
  readonly startsAfter?: string;
}

const ROTATED = /^(.*)\.(\d{12})(\.[^.]+)$/;

/** The files of the one log in `dir`, in chain order: rotated files by seq, then the live file. */
async function logFiles(dir: string): Promise<string[]> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.jsonl'));
  const rotated = names.flatMap((name) => {
    const match = ROTATED.exec(name);
    return match ? [{ name, family: `${match[1]}${match[3]}`, seq: Number(match[2]) }] : [];
  });
  const live = names.filter((name) => !ROTATED.test(name));
  const families = new Set([...live, ...rotated.map((r) => r.family)]);
  if (families.size > 1) throw new Error(`${dir} holds more than one audit log (${[...families].sort().join(', ')}); verify one file at a time`);
  return [...rotated.sort((a, b) => a.seq - b.seq).map((r) => r.name), ...live].map((name) => join(dir, name));
}

/** Verifies an audit file, or every file of the log in a directory, in chain order. */
export async function verifyAuditLog(target: string): Promise<LogVerifyReport> {
  const files = (await stat(target)).isDirectory() ? await logFiles(target) : [target];
  const verified: { file: string; report: VerifyReport }[] = [];
  let records = 0;
  let previous: { file: string; report: VerifyReport } | undefined;
  let startsAfter: string | undefined;
  for (const file of files) {
    const report = await verifyAuditFile(file);
    verified.push({ file, report });
    records += report.records;
    const result = (firstBreak: ChainBreak): LogVerifyReport => ({ ok: false, files: verified, records, lastHash: report.lastHash, firstBreak: { ...firstBreak, file } });
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
  return { ok: true, files: verified, records, lastHash: previous?.report.lastHash ?? '', ...(startsAfter ? { startsAfter } : {}) };
}
