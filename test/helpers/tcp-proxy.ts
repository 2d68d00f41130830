/**
 * A loopback TCP proxy a test controls, to put a slow or broken network between a client and a
 * real server (Redis): delay every byte, stall the traffic, or drop every connection.
 *
 * Bytes keep their order in each direction: a chunk is passed on at its arrival time plus the
 * delay in force when it arrived, never before the chunk ahead of it.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A running proxy, from {@link startTcpProxy}. */
export interface TcpProxy {
  readonly port: number;
  /** Delays data from now on by `ms` in the direction(s) named (default both). */
  delay(ms: number, direction?: ProxyDirection): void;
  /** Holds all data from now on until {@link TcpProxy.resume}. */
  stall(): void;
  /** Releases held data (in order) and ends the delay. */
  resume(): void;
  /** Destroys every open connection at once (data held or in flight is lost). */
  drop(): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** Which way the delay applies: to the server (requests), to the client (replies), or both. */
export type ProxyDirection = 'to_server' | 'to_client' | 'both';

interface Pipe {
  readonly from: Socket;
  readonly to: Socket;
  readonly direction: 'to_server' | 'to_client';
  queue: Array<{ readonly chunk: Buffer; readonly at: number }>;
  timer?: NodeJS.Timeout;
}

/** Starts a proxy on a free loopback port that forwards to 127.0.0.1:`targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const delays = { to_server: 0, to_client: 0 };
  let stalled = false;
  let accepted = 0;
  const pipes = new Set<Pipe>();
  const sockets = new Set<Socket>();

  const pump = (pipe: Pipe): void => {
    if (pipe.timer) return;
    const next = (): void => {
      pipe.timer = undefined;
      while (pipe.queue.length > 0 && !stalled) {
        const head = pipe.queue[0]!;
        const wait = head.at - Date.now();
        if (wait > 0) {
          pipe.timer = setTimeout(next, wait);
          return;
        }
        pipe.queue.shift();
        if (!pipe.to.destroyed) pipe.to.write(head.chunk);
      }
    };
    next();
  };

  const wire = (from: Socket, to: Socket, direction: Pipe['direction']): void => {
    const pipe: Pipe = { from, to, direction, queue: [] };
    pipes.add(pipe);
    from.on('data', (chunk) => {
      const last = pipe.queue.at(-1)?.at ?? 0;
      pipe.queue.push({ chunk, at: Math.max(last, Date.now() + delays[direction]) });
      pump(pipe);
    });
    from.on('close', () => {
      pipes.delete(pipe);
      if (pipe.timer) clearTimeout(pipe.timer);
      to.destroy();
    });
  };

  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
    wire(client, upstream, 'to_server');
    wire(upstream, client, 'to_client');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    port: (server.address() as AddressInfo).port,
    get accepted() {
      return accepted;
    },
    delay(ms, direction = 'both') {
      if (direction !== 'to_client') delays.to_server = ms;
      if (direction !== 'to_server') delays.to_client = ms;
    },
    stall() {
      stalled = true;
    },
    resume() {
      stalled = false;
      delays.to_server = 0;
      delays.to_client = 0;
      for (const pipe of pipes) pump(pipe);
    },
    drop() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
