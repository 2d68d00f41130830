/**
 * Before anything is timed: both engines must allow and deny exactly the same requests. Each
 * agreement case goes to both engines and must give its intended decision on each; every load
 * request must be allowed by both (so the timed load measures allows on both). Any difference
 * fails the benchmark.
 */
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/transport/protos.js';
import type { RunningEngine } from './engines.js';
import type { Scenario } from './scenarios.js';

interface CheckAnswer {
  status?: { code?: number };
  deniedResponse?: { status?: { code?: number } };
}

type CheckClient = grpc.Client & { Check: (req: object, options: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: CheckAnswer) => void) => void };

/** One engine's answer: allowed or not, and the HTTP status of a denial. */
export interface Verdict {
  readonly allowed: boolean;
  readonly httpStatus?: number;
}

function checkClient(port: number): CheckClient {
  return new (loadServices().clients.Authorization)(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as CheckClient;
}

function check(client: CheckClient, request: object): Promise<Verdict> {
  return new Promise((resolve, reject) =>
    client.Check(request, { deadline: Date.now() + 10_000 }, (error, answer) => {
      if (error) reject(error);
      else {
        const allowed = (answer.status?.code ?? 0) === 0;
        resolve(allowed ? { allowed } : { allowed, ...(answer.deniedResponse?.status?.code ? { httpStatus: answer.deniedResponse.status.code } : {}) });
      }
    }),
  );
}

/** One line per case, for the output: the case and each engine's verdict. */
export interface AgreementLine {
  readonly name: string;
  readonly expected: boolean;
  readonly signalbox: Verdict;
  readonly opa: Verdict;
}

/**
 * The size in bytes of the CheckResponse an engine sends for `request`, as it travels (protobuf,
 * before HTTP/2 framing): the load generator, and in production Envoy, decodes every byte of it.
 */
export function responseBytes(port: number, request: object): Promise<number> {
  const check = loadServices().authorization.Check!;
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return new Promise<number>((resolve, reject) =>
    client.makeUnaryRequest(check.path, check.requestSerialize, (bytes: Buffer) => bytes, request, { deadline: Date.now() + 10_000 }, (error, bytes) =>
      error || !bytes ? reject(error ?? new Error('no response')) : resolve(bytes.length),
    ),
  ).finally(() => client.close());
}

/** Sends every case and every load request to both engines; throws on the first disagreement, listing all. */
export async function checkAgreement(scenario: Scenario, signalbox: RunningEngine, opa: RunningEngine): Promise<AgreementLine[]> {
  const clients = { signalbox: checkClient(signalbox.grpcPort), opa: checkClient(opa.grpcPort) };
  try {
    const lines: AgreementLine[] = [];
    for (const c of scenario.cases) {
      lines.push({ name: c.name, expected: c.allowed, signalbox: await check(clients.signalbox, c.request), opa: await check(clients.opa, c.request) });
    }
    const wrong = lines.filter((l) => l.signalbox.allowed !== l.expected || l.opa.allowed !== l.expected);
    for (const [i, request] of scenario.load.entries()) {
      const [s, o] = await Promise.all([check(clients.signalbox, request), check(clients.opa, request)]);
      if (!s.allowed || !o.allowed) wrong.push({ name: `load request ${i}`, expected: true, signalbox: s, opa: o });
    }
    if (wrong.length > 0) {
      const describe = (v: Verdict): string => (v.allowed ? 'allow' : `deny${v.httpStatus ? ` ${v.httpStatus}` : ''}`);
      throw new Error(
        `${scenario.name}: the engines do not decide alike:\n${wrong.map((l) => `  ${l.name}: expected ${l.expected ? 'allow' : 'deny'}, signalbox ${describe(l.signalbox)}, opa-envoy-plugin ${describe(l.opa)}`).join('\n')}`,
      );
    }
    return lines;
  } finally {
    clients.signalbox.close();
    clients.opa.close();
  }
}
