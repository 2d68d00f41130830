/**
 * The OPA command-line tool, used only at build and test time (never while serving).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SignalboxError } from '../core/errors.js';
import { pinnedOpaVersion, projectRoot } from '../core/paths.js';

/** What one OPA command printed and its exit code; a failing run is data, so each caller can word its own error. */
export interface OpaRun {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Finds the OPA binary: $SIGNALBOX_OPA, else the pinned copy in .tools/bin, installed by scripts/install-opa.sh. */
export function opaBinary(): string {
  const fromEnv = process.env.SIGNALBOX_OPA;
  if (fromEnv) return fromEnv;
  const local = join(projectRoot(), '.tools', 'bin', 'opa');
  if (existsSync(local)) return local;
  throw new SignalboxError(
    'policy_build_failed',
    `the OPA CLI is not installed: run "bash scripts/install-opa.sh" (installs OPA v${pinnedOpaVersion()} with go install)`,
  );
}

/** Runs OPA and returns its output; a non-zero exit is returned, not thrown, so callers can word the error. */
export function runOpa(args: readonly string[], options: { cwd?: string } = {}): Promise<OpaRun> {
  const binary = opaBinary();
  return new Promise((resolve, reject) => {
    execFile(binary, args, { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(new SignalboxError('policy_build_failed', `cannot run OPA (${binary}): ${error.message}`, { cause: error }));
        return;
      }
      resolve({ stdout, stderr, exitCode: error ? (error.code as number) : 0 });
    });
  });
}
