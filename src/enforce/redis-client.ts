/**
 * The ioredis client a RedisStore runs on: standalone or Cluster, never queueing a command while
 * Redis is unreachable, reconnecting for ever in the background.
 */
import { Cluster, Redis } from 'ioredis';

/** A standalone or Cluster client. */
export type Client = Redis | Cluster;

/** What the client needs from the store's options. */
export interface RedisClientOptions {
  readonly url?: string;
  readonly cluster?: readonly string[];
  readonly password?: string;
  readonly commandTimeoutMs: number;
  readonly connectTimeoutMs: number;
}

/** Creates the client; it connects in the background. */
export function connectRedis(options: RedisClientOptions): Client {
  const connection = { maxRetriesPerRequest: 0, commandTimeout: options.commandTimeoutMs, connectTimeout: options.connectTimeoutMs };
  // Keep trying for ever, backing off to 2 s: the service must recover without a restart.
  const backOff = (attempt: number) => Math.min(attempt * 100, 2000);
  let client: Client;
  if (options.cluster && options.cluster.length > 0) {
    client = new Cluster(
      options.cluster.map((node) => {
        const at = node.lastIndexOf(':');
        return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
      }),
      {
        // Node connections are made lazily, on their first command, and queue it while they
        // connect; the Cluster, not the node, reconnects. (This store used to pass its
        // standalone options to the nodes, offline queue off: a command for a node still
        // connecting was refused at once, and when that command was the Cluster's own ready
        // check the Cluster dropped every connection and started again. Under load it flapped
        // like that for seconds after start-up, failing reservations with 503 "Cluster isn't
        // ready".) commandTimeout bounds the wait of a command queued on a node (ioredis arms
        // it before queueing). The Cluster's own queue only serves its ready check:
        // RedisStore.connected() refuses at once, without queueing, while the Cluster is not ready.
        enableOfflineQueue: true,
        clusterRetryStrategy: backOff,
        slotsRefreshTimeout: options.connectTimeoutMs,
        redisOptions: { ...connection, ...(options.password ? { password: options.password } : {}) },
      },
    );
  } else {
    client = new Redis(options.url ?? 'redis://127.0.0.1:6379', { ...connection, enableOfflineQueue: false, retryStrategy: backOff, lazyConnect: false });
  }
  return client;
}

/**
 * How far this process's clock is ahead of Redis's (negative: behind), in ms: Redis's TIME
 * against the local clock at the middle of the round trip. For a Cluster, the largest
 * difference over its masters.
 */
export async function serverClockSkewMs(client: Client): Promise<number> {
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client];
  let worst = 0;
  for (const node of nodes) {
    const sent = Date.now();
    const [seconds, micros] = await node.time();
    const received = Date.now();
    const redisMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    const skew = Math.round((sent + received) / 2 - redisMs);
    if (Math.abs(skew) > Math.abs(worst)) worst = skew;
  }
  return worst;
}
