/**
 * `signalbox vault`: the credential vault's command, on the real process.
 */
import { runVaultCommand } from '../vault/vault.js';

/**
 * `signalbox vault ...` with the real process: keys from the environment, the value (for set)
 * from stdin. stdin is only touched when a value is read from it, so the other commands do not
 * wait on, or hold open, a terminal or pipe they never read.
 */
export async function vault(args: string[]): Promise<number> {
  return runVaultCommand(args, {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: {
      get isTTY() {
        return process.stdin.isTTY;
      },
      [Symbol.asyncIterator]: () => process.stdin[Symbol.asyncIterator](),
    },
  });
}
