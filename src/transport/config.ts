/** The `server` section: where the gRPC and HTTP listeners bind, and how they shut down. */
import { z } from 'zod';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port (for example 0.0.0.0:9191)');

/** The `server` section. */
export const serverSchema = z
  .object({
    grpc_addr: hostPort.default('0.0.0.0:9191'),
    http_addr: hostPort.default('0.0.0.0:8181'),
    /** Largest gRPC message accepted (a Check carrying a request body), in bytes. */
    max_request_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /** How long SIGTERM waits for in-flight calls before closing connections. */
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(10_000),
  })
  .strict();

/** The parsed `server` section, with defaults applied. */
export type ServerConfig = z.output<typeof serverSchema>;
