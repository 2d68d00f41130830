// Calls to Signalbox's admin API with the admin token the user entered. The token lives in this
// tab's sessionStorage (gone when the tab closes, never in a cookie, so no other site can make the
// browser send it) and travels only as a bearer header to this same origin.

const TOKEN_KEY = 'signalbox.admin_token';

/** The API refused the credential (401/403): the page asks for a token again. */
export class AuthError extends Error {}

/** The endpoint is not served by this server (404), e.g. the ledger is not enabled. */
export class MissingError extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * GETs a JSON document from this server. Without a token the call is still made: with mTLS the
 * browser's client certificate may be the credential.
 * @param {string} path
 * @param {Record<string, string | number | undefined>} [query]
 */
export async function getJson(path, query = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value));
  const headers = { accept: 'application/json' };
  const current = token();
  if (current) headers.authorization = `Bearer ${current}`;
  const res = await fetch(url, { headers, cache: 'no-store', credentials: 'same-origin', redirect: 'error' });
  if (res.status === 401 || res.status === 403) throw new AuthError(res.status === 403 ? 'this identity is not an administrator' : 'an admin token is required');
  if (res.status === 404) throw new MissingError(`${path} is not served here`);
  const body = await res.json().catch(() => undefined);
  if (res.status === 503 && body?.error?.code === 'ledger_unavailable') throw new MissingError(body.error.message);
  if (!res.ok) throw new Error(body?.error?.code ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}
