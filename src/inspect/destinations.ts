/**
 * SSRF facts for tool calls: the hosts a tool call would reach, resolved, with a verdict on
 * whether each one is a private (non-public-internet) destination and why.
 *
 * Inspect never decides: this module produces `input.destinations` and the policy denies. It
 * fails closed in what it reports: a host it cannot resolve, a name that only exists inside a
 * network, an address outside the global unicast space, all come back `private: true` with a
 * reason, so a policy that denies on `private` denies them too, and a policy that wants to be
 * more lenient (for example on `unresolvable`) says so explicitly.
 *
 * What it does not do: it checks at decision time, the tool connects later. A name may resolve
 * differently then (DNS rebinding with a short TTL); only an egress proxy that pins the resolved
 * address closes that gap. Reporting a host as private when ANY of its addresses is private
 * narrows it (mixed answers are the usual rebinding trick).
 *
 * The parts live in `destinations/`: which addresses are private (`ip-rules.ts`), host text and
 * numeric forms (`hosts.ts`), finding URLs and hosts in tool arguments (`urls.ts`) and name
 * resolution (`resolve.ts`).
 */
import { classifyName, parseNumericHost, type NumericForm } from './destinations/hosts.js';
import { classifyAddress, verdict, type AddressVerdict, type DestinationReason } from './destinations/ip-rules.js';
import { defaultResolver, resolveName, type Resolution } from './destinations/resolve.js';
import { walk, type Candidate } from './destinations/urls.js';

/** One URL or host found in tool arguments, resolved and classified: an entry of `input.destinations`. */
export interface Destination {
  /** JSON path in the tool arguments where the URL or host was found. */
  readonly path: string;
  /** The URL as scheme://host[:port]/path, without userinfo, query or fragment (they may hold secrets); null for a bare host. */
  readonly url: string | null;
  /** The canonical host: lowercase, IDNA A-label, numeric forms as dotted IPv4, IPv6 without brackets, no trailing dot. */
  readonly host: string;
  /** The explicit port, else the scheme's default for http(s)/ws(s)/ftp; null when unknown. */
  readonly port: number | null;
  /** Canonical IP addresses: the literal, or every resolver answer. IPv4-mapped IPv6 is shown as IPv4. */
  readonly addresses: readonly string[];
  /** True when the host is not a public internet destination (see DestinationReason). */
  readonly private: boolean;
  /** Why it is private; when several addresses are private, the most severe reason. Null when public. */
  readonly reason: DestinationReason | null;
  /** Set when the host was a numeric IP written in a non-canonical form (see NumericForm), else null. */
  readonly numeric_form: NumericForm | null;
}

/** How {@link findDestinations} resolves names: the resolver, its timeout and how many names it looks up. */
export interface DestinationOptions {
  /** Resolves a name to IP addresses; injectable so tests never touch the network. Default: {@link defaultResolver}. */
  readonly resolve?: (host: string) => Promise<string[]>;
  /** Per-lookup timeout; a lookup that takes longer is `unresolvable`. Default 2000 ms. */
  readonly timeoutMs?: number;
  /** The most distinct names looked up per call; further names are `limit_exceeded` (private). Default 32. */
  readonly maxDestinations?: number;
}

const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_MAX_DESTINATIONS = 32;

/**
 * Finds the network destinations in tool-call arguments and classifies each one.
 *
 * Found: string values that are URLs with a network scheme (http(s), ws(s), ftp, gopher, file,
 * dict, ldap, redis, ...), URLs inside free text and inside other URLs' parameters, and values of
 * host-like keys (url, uri, host, hostname, endpoint, address, domain, ip, server, and names
 * ending in them such as base_url) even without a scheme. JSON strings are parsed and walked.
 *
 * Classified: numeric hosts directly; special names (localhost, metadata names, internal-only
 * suffixes) without a lookup; other names through `options.resolve`, private when ANY answer is
 * private. A name that does not resolve is `unresolvable` and private (fail closed).
 */
export async function findDestinations(
  toolArguments: ReadonlyArray<{ path: string; arguments: unknown }>,
  options: DestinationOptions = {},
): Promise<Destination[]> {
  const resolve = options.resolve ?? defaultResolver;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxLookups = options.maxDestinations ?? DEFAULT_MAX_DESTINATIONS;

  const candidates: Candidate[] = [];
  for (const entry of toolArguments) walk(entry.arguments, entry.path, false, candidates, 0);

  const unique: Candidate[] = [];
  const seen = new Set<string>();
  for (const candidate of candidates) {
    const key = JSON.stringify([candidate.path, candidate.url, candidate.host, candidate.port]);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(candidate);
  }

  // One lookup per distinct name, at most maxLookups of them, all at once.
  const lookups = new Map<string, Promise<Resolution>>();
  for (const candidate of unique) {
    if (candidate.host === '' || parseNumericHost(candidate.host) || classifyName(candidate.host)) continue;
    if (lookups.has(candidate.host) || lookups.size >= maxLookups) continue;
    lookups.set(candidate.host, resolveName(candidate.host, resolve, timeoutMs));
  }

  return Promise.all(
    unique.map(async (candidate): Promise<Destination> => {
      let addresses: string[] = [];
      let result: AddressVerdict;
      const numeric = candidate.host === '' ? undefined : parseNumericHost(candidate.host);
      if (candidate.host === '') {
        // Only a file: URL has an empty host (new URL() also empties file://localhost/).
        result = candidate.file ? verdict('local_file') : verdict('unresolvable');
      } else if (numeric) {
        addresses = [numeric.ip];
        result = classifyAddress(numeric.ip);
      } else {
        const byName = classifyName(candidate.host);
        const lookup = lookups.get(candidate.host);
        if (byName) result = byName;
        else if (!lookup) result = verdict('limit_exceeded');
        else ({ addresses, verdict: result } = await lookup);
      }
      return {
        path: candidate.path,
        url: candidate.url,
        host: candidate.host,
        port: candidate.port,
        addresses,
        private: result.private,
        reason: result.reason,
        numeric_form: candidate.form,
      };
    }),
  );
}
