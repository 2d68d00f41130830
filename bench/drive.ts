/**
 * The closed-loop load the in-repo benchmarks drive (npm run bench, npm run bench:workers,
 * npm run bench:ext-proc): `concurrency` callers, each sending its next call as soon as the last
 * is answered, for `seconds`. `driveChecks` spreads Envoy Check calls round-robin over the given
 * clients (connections); bench/ext-proc-envoy.ts drives ext_proc streams through the same loop.
 */
import type * as grpc from '@grpc/grpc-js';

/** An Envoy Authorization client as grpc-js builds it from the loaded services. */
export type CheckClient = grpc.Client & { Check: (req: object, cb: (e: grpc.ServiceError | null, r: { status?: { code?: number } }) => void) => void };

/** Per-call latencies (ms) and how many calls were denied. */
export interface Driven {
  latencies: number[];
  denied: number;
}

/**
 * Runs `call` closed-loop from `concurrency` callers for `seconds`. Each call gets its caller's
 * slot and the sequence number of the call, resolves whether it was allowed, and times itself by
 * resolving at the moment the caller would have its answer; a rejection fails the run.
 */
export async function driveLoop(seconds: number, concurrency: number, call: (slot: number, sequence: number) => Promise<{ allowed: boolean }>): Promise<Driven> {
  const latencies: number[] = [];
  let denied = 0;
  const end = performance.now() + seconds * 1000;
  let next = 0;
  const caller = async (slot: number): Promise<void> => {
    while (performance.now() < end) {
      const started = performance.now();
      const { allowed } = await call(slot, next++);
      latencies.push(performance.now() - started);
      if (!allowed) denied++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, slot) => caller(slot)));
  return { latencies, denied };
}

/** Check calls from `requests` in turn; a gRPC error fails the run. */
export function driveChecks(clients: readonly CheckClient[], requests: readonly object[], seconds: number, concurrency: number): Promise<Driven> {
  return driveLoop(seconds, concurrency, (slot, sequence) => {
    const client = clients[slot % clients.length]!;
    const request = requests[sequence % requests.length]!;
    return new Promise((resolve, reject) =>
      client.Check(request, (error, response) => (error ? reject(error) : resolve({ allowed: (response.status?.code ?? 0) === 0 }))),
    );
  });
}
