/**
 * `signalbox audit verify`: an audit log's hash chain, checked.
 */
import { verifyAuditFile } from '../audit/chain.js';
import { SignalboxError, describeCause } from '../core/errors.js';
import { UsageError } from './command.js';

/**
 * `signalbox audit verify FILE`: prints the record count and last hash and returns 0 when the
 * chain is intact, or the first break and 1; an unreadable file throws `audit_chain_broken`.
 */
export async function audit(args: string[]): Promise<number> {
  const [sub, file, ...rest] = args;
  if (sub !== 'verify' || !file || rest.length > 0) throw new UsageError('usage: signalbox audit verify FILE');
  let report;
  try {
    report = await verifyAuditFile(file);
  } catch (error) {
    throw new SignalboxError('audit_chain_broken', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? describeCause(error)}`, { cause: error });
  }
  if (report.ok) {
    process.stdout.write(`ok: ${report.records} records, chain intact, last hash ${report.lastHash}\n`);
    return 0;
  }
  const brk = report.firstBreak!;
  const code = brk.problem === 'torn_tail' ? 'audit_tail_torn' : 'audit_chain_broken';
  process.stdout.write(
    `${code}: line ${brk.line}${brk.seq === null ? '' : ` (seq ${brk.seq})`}: ${brk.problem}: ${brk.detail}; ${report.records} records verified before it\n`,
  );
  return 1;
}
