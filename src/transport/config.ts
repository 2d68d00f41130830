/** The `server` section: where the gRPC and HTTP listeners bind, how many workers serve them, and how they shut down. */
import { z } from 'zod';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port (for example 0.0.0.0:9191)');

const WORKERS = 'must be auto or a whole number from 1 to 256';

/** The `server` section. */
export const serverSchema = z
  .object({
    grpc_addr: hostPort.default('0.0.0.0:9191'),
    http_addr: hostPort.default('0.0.0.0:8181'),
    /** Largest gRPC message accepted (a Check carrying a request body), in bytes. */
    max_request_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /**
     * Processes serving the ports (`signalbox serve` only; README, "Workers"): auto is the
     * machine's available parallelism; 1 is one process, as before workers existed. A number
     * may come from SIGNALBOX_WORKERS as text.
     */
    workers: z
      .preprocess((value) => (typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value), z.union([z.literal('auto'), z.number().int(WORKERS).min(1, WORKERS).max(256, WORKERS)], { error: WORKERS }))
      .default('auto'),
    /**
     * Serve gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl and similar
     * tools can list and describe the services without the .proto files. Off by default, as
     * opa-envoy-plugin's enable-reflection: it tells anyone who reaches the port every message
     * shape, which a production listener has no need to advertise.
     */
    grpc_reflection: z.boolean().default(false),
    /** How long SIGTERM waits for in-flight calls before closing connections. */
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(10_000),
  })
  .strict();

/** The parsed `server` section, with defaults applied. */
export type ServerConfig = z.output<typeof serverSchema>;
