import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/core/paths.js';

const run = promisify(execFile);

/** The pinned grpcurl that scripts/install-grpcurl.sh puts in .tools/bin; missing, the test fails loudly. */
export function grpcurlPath(): string {
  const path = process.env.SIGNALBOX_GRPCURL ?? join(projectRoot(), '.tools', 'bin', 'grpcurl');
  if (!existsSync(path)) throw new Error(`grpcurl not found at ${path}: run "bash scripts/install-grpcurl.sh" (npm test runs it)`);
  return path;
}

/** Runs grpcurl with `args`; resolves stdout and stderr, or the exit code when it fails. */
export async function grpcurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(grpcurlPath(), args, { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}
