/**
 * The closed-loop load both in-repo benchmarks drive (npm run bench, npm run bench:workers):
 * `concurrency` callers, each sending its next Check as soon as the last is answered, spread
 * round-robin over the given clients (connections), for `seconds`.
 */
import type * as grpc from '@grpc/grpc-js';

/** An Envoy Authorization client as grpc-js builds it from the loaded services. */
export type CheckClient = grpc.Client & { Check: (req: object, cb: (e: grpc.ServiceError | null, r: { status?: { code?: number } }) => void) => void };

/** Per-call latencies (ms) and how many calls were denied; a gRPC error fails the run. */
export async function driveChecks(clients: readonly CheckClient[], requests: readonly object[], seconds: number, concurrency: number): Promise<{ latencies: number[]; denied: number }> {
  const latencies: number[] = [];
  let denied = 0;
  const end = performance.now() + seconds * 1000;
  let next = 0;
  const caller = async (slot: number): Promise<void> => {
    const client = clients[slot % clients.length]!;
    while (performance.now() < end) {
      const request = requests[next++ % requests.length]!;
      const started = performance.now();
      await new Promise<void>((resolve, reject) =>
        client.Check(request, (error, response) => {
          if (error) reject(error);
          else {
            if ((response.status?.code ?? 0) !== 0) denied++;
            resolve();
          }
        }),
      );
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, slot) => caller(slot)));
  return { latencies, denied };
}
