import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { engineCapabilitiesFile } from '../src/bundles/capabilities.js';
import { projectRoot } from '../src/core/paths.js';

/**
 * The suite needs the pinned OPA CLI (scripts/install-opa.sh, run by `npm test`). Fail loudly
 * rather than skip policy tests when it is missing.
 */
export default async function setup(): Promise<void> {
  const opa = process.env.SIGNALBOX_OPA ?? join(projectRoot(), '.tools', 'bin', 'opa');
  if (!existsSync(opa)) {
    throw new Error(`OPA CLI not found at ${opa}: run "npm test" (it installs OPA) or "bash scripts/install-opa.sh"`);
  }
  // Computed once here so parallel test files share the cached capabilities file.
  await engineCapabilitiesFile();
}
