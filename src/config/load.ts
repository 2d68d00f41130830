/**
 * Loading the configuration: one YAML file (optional) with ${ENV} expansion, then the
 * per-deployment environment overrides, then validation against the schema. A bad config is a
 * `config_invalid` error naming the key and the problem.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { SignalboxError } from '../core/errors.js';
import { configSchema, type SignalboxConfig } from './schema.js';

/** Environment variables that override one config key each, for settings operators change per deployment. */
export const ENV_OVERRIDES: Readonly<Record<string, readonly [string, ...string[]]>> = Object.freeze({
  SIGNALBOX_GRPC_ADDR: ['server', 'grpc_addr'],
  SIGNALBOX_HTTP_ADDR: ['server', 'http_addr'],
  SIGNALBOX_WORKERS: ['server', 'workers'],
  SIGNALBOX_TLS_CERT_FILE: ['server', 'tls', 'cert_file'],
  SIGNALBOX_TLS_KEY_FILE: ['server', 'tls', 'key_file'],
  SIGNALBOX_TLS_CLIENT_CA_FILE: ['server', 'tls', 'client_ca_file'],
  SIGNALBOX_ADMIN_TOKEN_FILE: ['server', 'admin', 'token_file'],
  SIGNALBOX_BUNDLE: ['policy', 'bundle'],
  SIGNALBOX_DECISION: ['policy', 'decision'],
  SIGNALBOX_DRY_RUN: ['policy', 'dry_run'],
  SIGNALBOX_POLICY_WATCH: ['policy', 'watch'],
  SIGNALBOX_BUNDLE_URL: ['policy', 'service', 'url'],
  SIGNALBOX_JWKS_URL: ['identity', 'jwks_url'],
  SIGNALBOX_JWKS_FILE: ['identity', 'jwks_file'],
  SIGNALBOX_JWT_ISSUER: ['identity', 'issuer'],
  SIGNALBOX_JWT_AUDIENCE: ['identity', 'audience'],
  SIGNALBOX_AUDIT_PATH: ['audit', 'path'],
  SIGNALBOX_AUDIT_DURABILITY: ['audit', 'durability'],
  SIGNALBOX_LOG_LEVEL: ['log', 'level'],
  SIGNALBOX_STORE: ['store', 'type'],
  SIGNALBOX_REDIS_URL: ['store', 'redis_url'],
  SIGNALBOX_REDIS_CLUSTER: ['store', 'redis_cluster'],
  SIGNALBOX_REDIS_PASSWORD: ['store', 'redis_password'],
  SIGNALBOX_VAULT_FILE: ['vault', 'file'],
});

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Replaces ${NAME} and ${NAME:-default} in every string of a parsed document. `from`, when given,
 * collects which variables each expanded key's value came from (dotted key → names), so a
 * validation error can name the variable the operator set, not only the key.
 */
export function expandEnv(value: unknown, env: Env, path: string[] = [], from?: Map<string, string[]>): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_match, name: string, fallback: string | undefined) => {
      const found = env[name];
      if (found !== undefined && found !== '') {
        const key = path.join('.');
        from?.set(key, [...(from.get(key) ?? []), name]);
        return found;
      }
      if (fallback !== undefined) return fallback;
      throw new SignalboxError('config_invalid', `${path.join('.') || '(root)'}: environment variable ${name} is not set (use \${${name}:-default})`);
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => expandEnv(item, env, [...path, String(i)], from));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, [...path, k], from)]));
  }
  return value;
}

/** Sets the keys the environment overrides; records each one's variable in `from` (dotted key → name). */
function applyOverrides(document: Record<string, unknown>, env: Env, from: Map<string, string[]>): void {
  for (const [name, path] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    // An override replaces the key whole, so a ${VAR} the file had there no longer matters.
    from.set(path.join('.'), [name]);
    let node = document;
    for (const segment of path.slice(0, -1)) {
      const existing = node[segment];
      const child = existing && typeof existing === 'object' && !Array.isArray(existing) ? (existing as Record<string, unknown>) : {};
      node[segment] = child;
      node = child;
    }
    node[path[path.length - 1] as string] = value;
  }
}

/** Parses, expands, overrides and validates; the result is deeply frozen. */
export function parseConfig(yamlText: string | undefined, env: Env = process.env, source = 'config'): SignalboxConfig {
  let raw: unknown = {};
  if (yamlText !== undefined) {
    try {
      raw = parseYaml(yamlText) ?? {};
    } catch (error) {
      throw new SignalboxError('config_invalid', `${source}: not valid YAML: ${(error as Error).message.split('\n')[0]}`, { cause: error });
    }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SignalboxError('config_invalid', `${source}: the top level must be a mapping`);
  }
  const from = new Map<string, string[]>();
  const document = expandEnv(raw, env, [], from) as Record<string, unknown>;
  applyOverrides(document, env, from);
  const parsed = configSchema.safeParse(document);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path.length ? issue.path.join('.') : '(root)';
    const problem = issue?.code === 'unrecognized_keys' ? `unknown key(s) ${(issue as { keys: string[] }).keys.join(', ')}` : issue?.message;
    const variables = variablesFor(key, from);
    // Name what the operator set: the variable first when the value came from one (never its value: it may be a secret).
    const where = variables.length > 0 && variables.every((v) => v in ENV_OVERRIDES) ? `${variables.join(', ')}: ${key}` : variables.length > 0 ? `${source}: ${key} (from ${variables.map((v) => `\${${v}}`).join(', ')})` : `${source}: ${key}`;
    throw new SignalboxError('config_invalid', `${where}: ${problem ?? 'invalid'}`, {
      details: { issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) },
    });
  }
  return deepFreeze(parsed.data);
}

/** The variables a key's value (or a value inside it) came from: the key itself or any key above it. */
function variablesFor(key: string, from: ReadonlyMap<string, string[]>): string[] {
  const names = new Set<string>();
  for (const [at, variables] of from) {
    if (key === at || key.startsWith(`${at}.`)) for (const v of variables) names.add(v);
  }
  return [...names];
}

/** Loads the file at `path` (or only defaults and environment when there is none). */
export function loadConfig(path: string | undefined, env: Env = process.env): SignalboxConfig {
  if (!path) return parseConfig(undefined, env, 'defaults');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SignalboxError('config_invalid', `cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, { cause: error });
  }
  return parseConfig(text, env, path);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
