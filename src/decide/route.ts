/**
 * Turning the policy's `route` into what the gateway acts on: routing headers, and the provider
 * credential from the vault in place of whatever credential the caller sent.
 *
 * Applications never hold provider keys: the policy names a vault entry (`route.credential`),
 * and on allow Signalbox sets it in the header that provider reads, and removes every caller
 * credential header, so the provider sees only the managed key and the caller's token never
 * leaves the gateway.
 */
import { SignalboxError } from '../core/errors.js';
import type { HeaderEntry, RouteClaim } from '../policy/result.js';

/** Names the route's provider on the upstream request, for the gateway to route on. */
export const PROVIDER_HEADER = 'x-signalbox-provider';
/** The model the route asks for; the native API also rewrites `model` in the upstream body. */
export const MODEL_HEADER = 'x-signalbox-model';
/** The route's upstream (a cluster name, `host:port` or base URL): what Envoy routes match on. */
export const UPSTREAM_HEADER = 'x-signalbox-upstream';
/** The fallback targets' providers, comma-separated, for gateways that retry within one request. */
export const FALLBACKS_HEADER = 'x-signalbox-fallbacks';

/** The routing headers Signalbox owns; a caller's copy of them is always removed. */
export const ROUTE_HEADERS: readonly string[] = [PROVIDER_HEADER, MODEL_HEADER, UPSTREAM_HEADER, FALLBACKS_HEADER];

/** Where the running server's credentials come from (the vault); names only are ever listed. */
export interface CredentialLookup {
  get(name: string): string | undefined;
  names(): readonly string[];
}

/** How a provider takes its API key. */
export interface CredentialScheme {
  /** Lower-case header name. */
  readonly header: string;
  /** Text before the key in the header value ("Bearer "). */
  readonly prefix: string;
}

const BEARER: CredentialScheme = { header: 'authorization', prefix: 'Bearer ' };

/**
 * Providers whose API key does not go in `Authorization: Bearer`. Everything else (OpenAI,
 * Mistral, Groq, Together, DeepSeek, xAI, OpenRouter, Fireworks, ...) takes a bearer token.
 */
const BUILT_IN_SCHEMES: Readonly<Record<string, CredentialScheme>> = {
  anthropic: { header: 'x-api-key', prefix: '' },
  azure: { header: 'api-key', prefix: '' },
  azure_openai: { header: 'api-key', prefix: '' },
  google: { header: 'x-goog-api-key', prefix: '' },
  gemini: { header: 'x-goog-api-key', prefix: '' },
};

/**
 * The `routing` config section as {@link routeEffect} needs it: who takes which credential header,
 * and which caller headers go.
 */
export interface RoutingOptions {
  /** Schemes configured per provider name (`routing.providers`), over the built-in ones. */
  readonly schemes: Readonly<Record<string, CredentialScheme>>;
  /** Caller credential headers removed whenever a credential is injected (`routing.strip_headers`). */
  readonly stripHeaders: readonly string[];
}

/**
 * The scheme for a provider: configured by exact name, else built in by exact name, else built in
 * by the name's first word ("anthropic-eu" → anthropic), else a bearer token.
 */
export function credentialScheme(provider: string, options: RoutingOptions): CredentialScheme {
  const configured = options.schemes[provider];
  if (configured) return configured;
  const exact = BUILT_IN_SCHEMES[provider.toLowerCase()];
  if (exact) return exact;
  const family = provider.toLowerCase().split(/[-.]/, 1)[0] ?? '';
  return BUILT_IN_SCHEMES[family] ?? BEARER;
}

/** Every header a provider credential can travel in: the built-in schemes' and the configured ones'. */
export function credentialHeaders(options: RoutingOptions): string[] {
  const schemes = [BEARER, ...Object.values(BUILT_IN_SCHEMES), ...Object.values(options.schemes)];
  return [...new Set(schemes.map((scheme) => scheme.header.toLowerCase()))];
}

/** What a route changes on the upstream request. */
export interface RouteEffect {
  /** Headers to set (routing headers, and the credential when one was named). */
  readonly headers: HeaderEntry[];
  /** Headers to remove (caller credentials when a credential is injected). */
  readonly remove: string[];
  /** True when a credential was injected: the headers hold a secret and must never be logged. */
  readonly credentialInjected: boolean;
}

/**
 * The headers for a route. Throws `credential_unavailable` when the policy named a credential
 * that the vault does not hold (or no vault is configured): the request is denied rather than
 * sent with the caller's credential or none.
 */
export function routeEffect(route: RouteClaim, credentials: CredentialLookup | undefined, options: RoutingOptions): RouteEffect {
  const headers: HeaderEntry[] = [{ key: PROVIDER_HEADER, value: route.provider }];
  if (route.model !== undefined) headers.push({ key: MODEL_HEADER, value: route.model });
  if (route.upstream !== undefined) headers.push({ key: UPSTREAM_HEADER, value: route.upstream });
  if (route.fallbacks.length > 0) headers.push({ key: FALLBACKS_HEADER, value: route.fallbacks.map((f) => f.provider).join(',') });
  if (route.credential === undefined) return { headers, remove: [], credentialInjected: false };

  const secret = credentials?.get(route.credential);
  if (secret === undefined || secret === '') {
    throw new SignalboxError(
      'credential_unavailable',
      credentials === undefined
        ? `the policy named credential "${route.credential}" but no vault is open (set SIGNALBOX_VAULT_KEY)`
        : `the policy named credential "${route.credential}" but the vault has no such entry`,
      { details: { credential: route.credential, provider: route.provider } },
    );
  }
  const scheme = credentialScheme(route.provider, options);
  headers.push({ key: scheme.header, value: `${scheme.prefix}${secret}` });
  // The injected header is set, not removed: Envoy applies removals after additions.
  const remove = options.stripHeaders.filter((name) => name !== scheme.header);
  return { headers, remove, credentialInjected: true };
}
