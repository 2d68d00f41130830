/**
 * The programs the peer benchmark drives, each installed by one of the project's scripts into
 * .tools (pinned). A missing one is an error that names the script to run; nothing is skipped.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/core/paths.js';
import { nginxBinary } from '../../test/helpers/gateways.js';

/** Paths of the tools, checked to exist. */
export interface Tools {
  readonly ghz: string;
  readonly opaEnvoyPlugin: string;
  readonly envoy: string;
  readonly vegeta: string;
  readonly nginx: string;
  readonly taskset: string;
}

const TOOLS = [
  ['ghz', 'ghz', 'scripts/install-ghz.sh'],
  ['opaEnvoyPlugin', 'opa-envoy-plugin', 'scripts/install-opa-envoy-plugin.sh'],
  ['envoy', 'envoy', 'scripts/install-envoy.sh'],
  ['vegeta', 'vegeta', 'scripts/install-vegeta.sh'],
] as const;

/** Finds every tool, or throws one error listing each missing tool and the script that installs it. */
export function findTools(): Tools {
  const bin = join(projectRoot(), '.tools', 'bin');
  const missing: string[] = [];
  const found: Record<string, string> = {};
  for (const [key, file, script] of TOOLS) {
    const path = join(bin, file);
    if (existsSync(path)) found[key] = path;
    else missing.push(`${file} (not at ${path}): run "bash ${script}"`);
  }
  try {
    found.nginx = nginxBinary();
  } catch {
    missing.push('nginx (the end-to-end upstream): run "bash scripts/install-test-deps.sh"');
  }
  const taskset = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p));
  if (taskset) found.taskset = taskset;
  else missing.push('taskset (pins server and load generator to separate cores): install Debian\'s util-linux');
  if (missing.length > 0) throw new Error(`missing tools (npm run bench:peer installs all but nginx and taskset):\n  ${missing.join('\n  ')}`);
  return found as unknown as Tools;
}
