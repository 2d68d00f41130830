/**
 * `signalbox audit verify`: an audit log's hash chain, checked.
 */
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { verifyAuditLog } from '../audit/verify-log.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { UsageError } from './command.js';

/**
 * `signalbox audit verify FILE|DIR`: verifies one audit file, or a directory's live file and its
 * rotated files in chain order; a directory written by several workers holds one chain per
 * worker, each verified, and none may be missing. Prints the record count and last hash (per
 * chain, for several) and returns 0 when every chain is intact, or the first break and 1
 * (`audit_tail_torn` for a torn final write, `audit_chain_broken` for anything else, a missing
 * worker chain included). A path that does not exist throws `audit_file_missing`; one that
 * cannot be read for another reason (permissions, not a log) `audit_chain_broken`.
 */
export async function audit(args: string[]): Promise<number> {
  // strict: an unknown option is a usage error, never a file name (`--` still allows a path that starts with -).
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  const [sub, target, ...rest] = positionals;
  if (sub !== 'verify' || !target || rest.length > 0) throw new UsageError('usage: signalbox audit verify FILE|DIR');
  let report;
  try {
    report = await verifyAuditLog(target);
  } catch (error) {
    // A typo in the path is not evidence of tampering: say so, with its own code.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new SignalboxError('audit_file_missing', `${target}: no such file or directory`, { cause: error });
    throw new SignalboxError('audit_chain_broken', `cannot read ${target}: ${(error as NodeJS.ErrnoException).code ?? describeCause(error)}`, { cause: error });
  }
  const files = report.files.length === 1 ? '' : ` in ${report.files.length} files`;
  if (report.ok) {
    if (report.chains.length > 1) {
      const each = report.chains.map((chain) => `  ${chain.name}: ${chain.records} records, last hash ${chain.lastHash}${chain.startsAfter ? ` (continues ${chain.startsAfter}, no longer kept)` : ''}\n`);
      process.stdout.write(`ok: ${report.records} records${files}, ${report.chains.length} chains, each intact, none missing\n${each.join('')}`);
      return 0;
    }
    const after = report.startsAfter ? ` (continues ${report.startsAfter}, no longer kept)` : '';
    process.stdout.write(`ok: ${report.records} records${files}, chain intact, last hash ${report.lastHash}${after}\n`);
    return 0;
  }
  const brk = report.firstBreak;
  if (!brk) {
    process.stdout.write(`audit_chain_broken: worker chain(s) missing: ${report.missing.join(', ')} (named by a workers record); ${report.records} records verified\n`);
    return 1;
  }
  const code = brk.problem === 'torn_tail' ? 'audit_tail_torn' : 'audit_chain_broken';
  const where = report.files.length === 1 ? '' : `${basename(brk.file)} `;
  process.stdout.write(
    `${code}: ${where}line ${brk.line}${brk.seq === null ? '' : ` (seq ${brk.seq})`}: ${brk.problem}: ${brk.detail}; ${report.records} records verified before it\n`,
  );
  return 1;
}
