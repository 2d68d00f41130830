import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineCapabilitiesFile } from '../src/bundles/capabilities.js';
import { projectRoot } from '../src/core/paths.js';

/**
 * The suite needs the pinned OPA CLI (scripts/install-opa.sh, run by `npm test`). Fail loudly
 * rather than skip policy tests when it is missing.
 *
 * Every temporary file the suite and the servers it starts make goes under one folder of the
 * run's own (TMPDIR, which the test files and their child processes inherit), removed when the
 * run ends: tests make a few hundred folders per run (bundles, audit trails, databases, about
 * 130 MB), and a test that fails before its own clean-up would otherwise leave them behind.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const opa = process.env.SIGNALBOX_OPA ?? join(projectRoot(), '.tools', 'bin', 'opa');
  if (!existsSync(opa)) {
    throw new Error(`OPA CLI not found at ${opa}: run "npm test" (it installs OPA) or "bash scripts/install-opa.sh"`);
  }
  // Computed once here so parallel test files share the cached capabilities file.
  await engineCapabilitiesFile();
  const runDir = await mkdtemp(join(tmpdir(), 'signalbox-suite-'));
  // Like /tmp itself: the PostgreSQL tests run the server as another user, in a folder of its own here.
  await chmod(runDir, 0o1777);
  process.env.TMPDIR = runDir;
  return async () => {
    await rm(runDir, { recursive: true, force: true });
  };
}
