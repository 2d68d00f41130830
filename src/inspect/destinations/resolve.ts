/**
 * Resolving names to addresses, with a timeout, and classifying every answer.
 */
import { lookup } from 'node:dns/promises';
import { canonicalIp, classifyAddress, mostSevere, verdict, type AddressVerdict } from './ip-rules.js';

/** The default resolver: the system resolver (getaddrinfo, so /etc/hosts counts), every address. */
export async function defaultResolver(host: string): Promise<string[]> {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((answer) => answer.address);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lookup timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** A name's canonical addresses and the most severe verdict over them. */
export type Resolution = { addresses: string[]; verdict: AddressVerdict };

/**
 * Resolves `name` with `resolve` and classifies every answer. Fails closed: an error, a timeout
 * or an empty answer is `unresolvable`, an answer that is not an IP address `invalid_address`.
 */
export async function resolveName(name: string, resolve: (host: string) => Promise<string[]>, timeoutMs: number): Promise<Resolution> {
  let answers: string[];
  try {
    answers = await withTimeout(resolve(name), timeoutMs);
  } catch {
    return { addresses: [], verdict: verdict('unresolvable') };
  }
  if (!Array.isArray(answers) || answers.length === 0) return { addresses: [], verdict: verdict('unresolvable') };
  const addresses: string[] = [];
  const verdicts: AddressVerdict[] = [];
  for (const answer of answers) {
    const ip = typeof answer === 'string' ? canonicalIp(answer) : undefined;
    if (ip === undefined) {
      verdicts.push(verdict('invalid_address'));
      continue;
    }
    if (!addresses.includes(ip)) addresses.push(ip);
    verdicts.push(classifyAddress(ip));
  }
  return { addresses, verdict: mostSevere(verdicts) };
}
