/**
 * Real X.509 certificates made for a test with the distribution's openssl: a CA, leaf
 * certificates it signs (server or client, with chosen SANs), expired ones, and a second CA.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, as files and as PEM. */
export interface Issued {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`openssl ${args[0]} failed (install the distribution's openssl package): ${stderr}`, { cause: error });
  }
}

let counter = 0;

/** A certificate authority in its own temp directory, signing leaves on request. */
export class TestCa {
  private constructor(
    readonly dir: string,
    readonly ca: Issued,
  ) {}

  static create(name: string): TestCa {
    const dir = mkdtempSync(join(tmpdir(), 'signalbox-ca-'));
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', `/CN=${name}`, '-days', '3',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      dir,
    );
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '1000\n');
    writeFileSync(
      join(dir, 'ca.cnf'),
      ['[ca]', 'default_ca = d', '[d]', 'database = index.txt', 'new_certs_dir = .', 'serial = serial', 'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', ''].join('\n'),
    );
    return new TestCa(dir, read(dir, 'ca'));
  }

  /**
   * Signs a leaf for `cn` with the given subjectAltName entries ("URI:spiffe://…", "DNS:…",
   * "IP:…"); `expired` makes one whose validity ended in 2020.
   */
  issue(cn: string, sans: readonly string[] = [], options: { expired?: boolean } = {}): Issued {
    const name = `leaf${++counter}`;
    const dir = this.dir;
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    const ext = ['basicConstraints=CA:FALSE', 'extendedKeyUsage=serverAuth,clientAuth', ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : [])];
    writeFileSync(join(dir, `${name}.ext`), ext.join('\n') + '\n');
    const dates = options.expired ? ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z'] : ['-days', '2'];
    openssl(['ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', `${name}.csr`, '-out', `${name}.crt`, '-extfile', `${name}.ext`, ...dates], dir);
    return read(dir, name);
  }
}

function read(dir: string, name: string): Issued {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}
