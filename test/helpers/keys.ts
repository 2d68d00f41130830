import { createServer, type Server } from 'node:http';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK, type JWTPayload } from 'jose';

export const ISSUER = 'https://idp.test.signalbox';
export const AUDIENCE = 'signalbox';

export interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256' | 'EdDSA';
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function signingKey(alg: SigningKey['alg'], kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

export interface TokenOptions {
  subject?: string;
  issuer?: string;
  audience?: string | string[];
  expiresIn?: number;
  notBefore?: number;
  now?: number;
  claims?: JWTPayload;
}

/** Mints a token; `now` is seconds since the epoch (defaults to the wall clock). */
export async function mint(key: SigningKey, options: TokenOptions = {}): Promise<string> {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({ roles: ['llm-user'], team: 'search', tenant: 'acme', ...(options.claims ?? {}) })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setSubject(options.subject ?? 'alice')
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresIn ?? 300));
  if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore);
  return jwt.sign(key.privateKey);
}

/** A JWKS endpoint on loopback that counts fetches and can change its keys. */
export class JwksServer {
  fetches = 0;
  private keys: JWK[];
  private constructor(
    private readonly server: Server,
    readonly url: string,
    keys: JWK[],
  ) {
    this.keys = keys;
  }

  static async start(keys: JWK[]): Promise<JwksServer> {
    let instance: JwksServer | undefined;
    const server = createServer((req, res) => {
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      instance!.fetches++;
      if (instance!.outage) {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('identity provider down');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: instance!.keys }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as { port: number };
    instance = new JwksServer(server, `http://127.0.0.1:${address.port}/.well-known/jwks.json`, keys);
    return instance;
  }

  /** While true, every fetch answers 503 (an identity-provider outage, on the same URL). */
  outage = false;

  setKeys(keys: JWK[]): void {
    this.keys = keys;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
