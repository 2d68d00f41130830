import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expandEnv, parseConfig } from '../src/config/load.js';

describe('configuration', () => {
  it('has working embedded defaults', () => {
    const config = parseConfig(undefined, {});
    expect(config.server).toMatchObject({ grpc_addr: '0.0.0.0:9191', http_addr: '0.0.0.0:8181' });
    expect(config.policy.decision).toBe('signalbox/authz/decision');
    expect(config.identity.algorithms).not.toContain('HS256');
    expect(Object.isFrozen(config.identity)).toBe(true);
  });

  it('expands ${ENV} and ${ENV:-default} in strings', () => {
    const config = parseConfig('identity:\n  jwks_url: ${URL}\n  issuer: ${ISS:-https://fallback}\n  audience: [a, "${AUD}"]\n', {
      URL: 'https://idp/jwks',
      AUD: 'b',
    });
    expect(config.identity.jwks_url).toBe('https://idp/jwks');
    expect(config.identity.issuer).toEqual(['https://fallback']);
    expect(config.identity.audience).toEqual(['a', 'b']);
  });

  it('names the key when an environment variable is missing', () => {
    expect(() => expandEnv({ audit: { path: '${NOPE}' } }, {})).toThrow(/audit\.path: environment variable NOPE is not set/);
  });

  it('applies the SIGNALBOX_* overrides over the file', () => {
    const config = parseConfig('server:\n  grpc_addr: 0.0.0.0:1\n', {
      SIGNALBOX_GRPC_ADDR: '127.0.0.1:9999',
      SIGNALBOX_HTTP_ADDR: '127.0.0.1:8888',
      SIGNALBOX_JWKS_URL: 'https://idp/jwks',
      SIGNALBOX_JWT_ISSUER: 'https://a,https://b',
      SIGNALBOX_JWT_AUDIENCE: 'signalbox',
      SIGNALBOX_AUDIT_PATH: '/var/log/sb.jsonl',
    });
    expect(config.server.grpc_addr).toBe('127.0.0.1:9999');
    expect(config.server.http_addr).toBe('127.0.0.1:8888');
    expect(config.identity.issuer).toEqual(['https://a', 'https://b']);
    expect(config.audit.path).toBe('/var/log/sb.jsonl');
  });

  it('takes server.workers from SIGNALBOX_WORKERS as a number, auto by default', () => {
    expect(parseConfig(undefined, {}).server.workers).toBe('auto');
    expect(parseConfig('server:\n  workers: 4\n', {}).server.workers).toBe(4);
    expect(parseConfig('server:\n  workers: 4\n', { SIGNALBOX_WORKERS: '2' }).server.workers).toBe(2);
    expect(parseConfig(undefined, { SIGNALBOX_WORKERS: 'auto' }).server.workers).toBe('auto');
  });

  it.each([
    ['an unknown key', 'server:\n  grpc_adr: 1\n', /config_invalid|server: unknown key\(s\) grpc_adr/],
    ['a bad address', 'server:\n  grpc_addr: nine\n', /server\.grpc_addr: must be host:port/],
    ['HMAC algorithms', 'identity:\n  algorithms: [RS256, HS256]\n', /identity\.algorithms: only asymmetric algorithms/],
    ['alg none', 'identity:\n  algorithms: none\n', /identity\.algorithms/],
    ['a JWKS without issuer', 'identity:\n  jwks_url: https://idp/jwks\n  audience: x\n', /identity\.issuer: required when a JWKS is configured/],
    ['a JWKS without audience', 'identity:\n  jwks_file: /k.json\n  issuer: x\n', /identity\.audience: required when a JWKS is configured/],
    ['both JWKS sources', 'identity:\n  jwks_url: https://idp/jwks\n  jwks_file: /k\n  issuer: x\n  audience: y\n', /identity\.jwks_file: set either/],
    ['a wrong type', 'server:\n  shutdown_grace_ms: soon\n', /server\.shutdown_grace_ms/],
    ['no workers', 'server:\n  workers: 0\n', /server\.workers: must be auto or a whole number from 1 to 256/],
    ['workers in words', 'server:\n  workers: two\n', /server\.workers: must be auto or a whole number from 1 to 256/],
    ['a bad decision path', 'policy:\n  decision: data.x.y\n', /policy\.decision: must be a slash-separated rule path/],
    ['broken YAML', 'server: [\n', /not valid YAML/],
    ['a list at the top', '- a\n', /top level must be a mapping/],
  ])('rejects %s with config_invalid naming the key', (_name, yaml, message) => {
    let caught: unknown;
    try {
      parseConfig(yaml, {});
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'config_invalid' });
    expect((caught as Error).message).toMatch(message);
  });

  it.each([
    ['SIGNALBOX_GRPC_ADDR', undefined, { SIGNALBOX_GRPC_ADDR: 'nine' }, /^SIGNALBOX_GRPC_ADDR: server\.grpc_addr: must be host:port/],
    ['SIGNALBOX_WORKERS, over the file', 'server:\n  workers: 2\n', { SIGNALBOX_WORKERS: 'lots' }, /^SIGNALBOX_WORKERS: server\.workers: must be auto/],
    ['SIGNALBOX_REDIS_CLUSTER, in a list', undefined, { SIGNALBOX_STORE: 'redis', SIGNALBOX_REDIS_CLUSTER: 'nohost' }, /^SIGNALBOX_REDIS_CLUSTER: store\.redis_cluster/],
    ['a ${VAR} in the file', 'server:\n  http_addr: ${HTTP_LISTEN}\n', { HTTP_LISTEN: 'eight' }, /^signalbox\.yaml: server\.http_addr \(from \$\{HTTP_LISTEN\}\): must be host:port/],
  ])('names the environment variable a bad value came from: %s', (_name, yaml, env, message) => {
    let caught: unknown;
    try {
      parseConfig(yaml, env, 'signalbox.yaml');
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'config_invalid' });
    expect((caught as Error).message).toMatch(message);
    // Never the value: a variable may hold a secret.
    for (const value of Object.values(env)) if (value !== 'redis') expect((caught as Error).message).not.toContain(value);
  });

  it('names only the key when the file, not the environment, holds the bad value', () => {
    expect(() => parseConfig('server:\n  grpc_addr: nine\n', { SIGNALBOX_HTTP_ADDR: '127.0.0.1:1' }, 'signalbox.yaml')).toThrow(/^signalbox\.yaml: server\.grpc_addr: must/);
  });

  it('accepts the example configuration', () => {
    const yaml = readFileSync('examples/config/signalbox.yaml', 'utf8');
    const config = parseConfig(yaml, { IDP_JWKS_URL: 'https://idp/jwks', IDP_ISSUER: 'https://idp/' }, 'examples/config/signalbox.yaml');
    expect(config.store).toMatchObject({ type: 'redis', redis_url: 'redis://127.0.0.1:6379', partition: 'none' });
    expect(config.budgets.spend_scopes).toContain('user:{subject}');
  });

  it('defaults to the in-memory store and documented budget settings', () => {
    const config = parseConfig(undefined, {});
    expect(config.store.type).toBe('memory');
    expect(config.budgets).toMatchObject({ hold_ttl_ms: 600_000, expired_holds: 'charge', spend_windows: ['day', 'month'] });
    expect(config.llm.default_max_output_tokens).toBe(4096);
  });

  it.each([
    ['store:\n  type: redis\n', /store\.redis_url: set redis_url or redis_cluster/],
    ['store:\n  type: redis\n  redis_url: redis://a:1\n  redis_cluster: [b:2]\n', /store\.redis_cluster: set either/],
    ['store:\n  redis_url: http://a:1\n', /store\.redis_url: must start with redis:\/\//],
    ['store:\n  redis_cluster: [nohostport]\n', /store\.redis_cluster/],
    ['budgets:\n  expired_holds: forgive\n', /budgets\.expired_holds/],
    ['budgets:\n  spend_windows: [fortnight]\n', /budgets\.spend_windows/],
    ['budgets:\n  hold_ttl_ms: 10\n', /budgets\.hold_ttl_ms/],
    ['llm:\n  default_max_output_tokens: 0\n', /llm\.default_max_output_tokens/],
  ])('rejects an invalid store or budgets section: %s', (yaml, message) => {
    expect(() => parseConfig(yaml, {})).toThrow(message);
  });

  it.each([
    ['a malformed bundle URL in the file', 'policy:\n  service:\n    url: "not a url"\n', {}, 'config: '],
    ['a malformed SIGNALBOX_BUNDLE_URL', undefined, { SIGNALBOX_BUNDLE_URL: 'nope' }, 'SIGNALBOX_BUNDLE_URL: '],
    ['a bundle URL with user info', 'policy:\n  service:\n    url: "http://user:s3cret@host/b.tar.gz"\n', {}, 'config: '],
  ])('rejects %s with config_invalid naming policy.service.url', (_name, yaml, env, where) => {
    let caught: unknown;
    try {
      parseConfig(yaml, env);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: 'config_invalid', message: expect.stringMatching(new RegExp(`^${where}policy\\.service\\.url: must`)) });
    expect((caught as Error).message).not.toContain('s3cret');
  });

  it('takes the Redis settings from SIGNALBOX_STORE and SIGNALBOX_REDIS_*', () => {
    const config = parseConfig(undefined, { SIGNALBOX_STORE: 'redis', SIGNALBOX_REDIS_CLUSTER: '10.0.0.1:7000,10.0.0.2:7000' });
    expect(config.store).toMatchObject({ type: 'redis', redis_cluster: ['10.0.0.1:7000', '10.0.0.2:7000'] });
  });
});
