/**
 * `signalbox build`: Rego policy folders compiled to bundles with `opa build`, optionally signed.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildAllBundles, buildBundle, type SigningOptions } from '../bundles/build.js';
import { SignalboxError } from '../core/errors.js';
import { projectRoot } from '../core/paths.js';
import { UsageError, print } from './command.js';

/**
 * `signalbox build`: every policies/<name>/ to bundles/<name>.tar.gz, or one folder with
 * `--src DIR --out FILE`; `--sign --signing-key PEM_FILE` also signs in OPA's format. Prints
 * what was built as JSON and returns 0; a build failure throws `policy_build_failed`.
 */
export async function build(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      policies: { type: 'string' },
      bundles: { type: 'string' },
      src: { type: 'string' },
      out: { type: 'string' },
      entrypoint: { type: 'string', short: 'e', multiple: true },
      'v0-compatible': { type: 'boolean' },
      sign: { type: 'boolean' },
      'signing-key': { type: 'string' },
      'signing-alg': { type: 'string' },
      'key-id': { type: 'string' },
      scope: { type: 'string' },
    },
    strict: true,
  });
  const signingFlags = values['signing-alg'] !== undefined || values['key-id'] !== undefined || values.scope !== undefined;
  if ((values.sign || signingFlags) && !values['signing-key']) throw new UsageError('build --sign needs --signing-key PEM_FILE');
  let signing: SigningOptions | undefined;
  if (values['signing-key']) {
    let key: string;
    try {
      key = await readFile(values['signing-key'], 'utf8');
    } catch (error) {
      throw new SignalboxError('policy_build_failed', `cannot read --signing-key ${values['signing-key']}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
    }
    signing = {
      key,
      algorithm: values['signing-alg'] ?? 'RS256',
      ...(values['key-id'] ? { keyid: values['key-id'] } : {}),
      ...(values.scope ? { scope: values.scope } : {}),
    };
  }
  if (values.src || values.out) {
    if (!values.src || !values.out) throw new UsageError('build --src needs --out (and the other way round)');
    const built = await buildBundle(resolve(values.src), resolve(values.out), {
      entrypoints: values.entrypoint ?? [],
      v0Compatible: values['v0-compatible'] ?? false,
      ...(signing ? { signing } : {}),
    });
    print(built);
    return 0;
  }
  const root = projectRoot();
  const built = await buildAllBundles(
    resolve(values.policies ?? join(root, 'policies')),
    resolve(values.bundles ?? join(root, 'bundles')),
    signing ? { signing } : {},
  );
  print(built);
  return 0;
}
