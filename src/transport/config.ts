/**
 * The `server` section: where the gRPC and HTTP listeners bind, how many workers serve them, how
 * they shut down, their TLS, and who may call the administrative endpoints.
 */
import { z } from 'zod';

const hostPort = z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port (for example 0.0.0.0:9191)');

const WORKERS = 'must be auto or a whole number from 1 to 256';

const filePath = z.string().min(1, 'must be a file path');

/**
 * `server.tls`: one certificate for both listeners (gRPC and HTTP), so a gateway reaches either
 * with the same trust settings and an operator rotates one secret. Absent, both speak plaintext.
 */
export const tlsSchema = z
  .object({
    /** PEM certificate chain the listeners present (leaf first). */
    cert_file: filePath,
    /** PEM private key of that certificate. */
    key_file: filePath,
    /** PEM bundle of the CAs client certificates are verified against; set, clients are asked for a certificate. */
    client_ca_file: filePath.optional(),
    /**
     * Refuse connections without a valid client certificate. Defaults to true when
     * `client_ca_file` is set; false accepts them, and only a verified certificate is an identity.
     */
    require_client_cert: z.boolean().optional(),
    /** How often the files are polled for a change, besides `fs.watch`. */
    poll_interval_ms: z.number().int().min(100).max(3_600_000).default(5_000),
  })
  .strict()
  .refine((tls) => !(tls.require_client_cert === true && !tls.client_ca_file), {
    message: 'require_client_cert needs client_ca_file (the CAs client certificates are verified against)',
    path: ['require_client_cert'],
  });

/**
 * `server.admin`: who may call the administrative endpoints (usage reports, spend, LiteLLM's
 * usage log, and any admin API to come). Nothing configured, they answer 401: deny by default.
 */
export const adminSchema = z
  .object({
    /**
     * The environment variable holding admin bearer tokens (several separated by commas or
     * whitespace, for rotation). The name is configured, never the token.
     */
    token_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name').default('SIGNALBOX_ADMIN_TOKEN'),
    /** A file of admin bearer tokens, one per line (several for rotation); re-read when it changes. */
    token_file: filePath.optional(),
    /** mTLS client identities (SPIFFE URI, else subject CN, else DNS name; README "TLS and admin authentication") allowed in. */
    principals: z.array(z.string().min(1)).default([]),
  })
  .strict();

/** The `server` section. */
export const serverSchema = z
  .object({
    grpc_addr: hostPort.default('0.0.0.0:9191'),
    http_addr: hostPort.default('0.0.0.0:8181'),
    /** Largest gRPC message accepted (a Check carrying a request body), in bytes. */
    max_request_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(4 * 1024 * 1024),
    /**
     * Processes serving the ports (`signalbox serve` only; README, "Workers"): auto is the
     * machine's available parallelism, capped by the cgroup CPU limit rounded up
     * (src/app/cpu-limit.ts); 1 is one process, as before workers existed. A number may come
     * from SIGNALBOX_WORKERS as text.
     */
    workers: z
      .preprocess((value) => (typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value), z.union([z.literal('auto'), z.number().int(WORKERS).min(1, WORKERS).max(256, WORKERS)], { error: WORKERS }))
      .default('auto'),
    /**
     * What workers keep resident under load (src/app/worker-memory.ts; README, "Memory"):
     * `bounded` starts each worker with a smaller V8 young generation, earlier full collections
     * and glibc's fixed mmap threshold; `node` leaves Node's defaults. Settings the operator makes
     * through NODE_OPTIONS or the environment win either way.
     */
    worker_memory: z.enum(['bounded', 'node']).default('bounded'),
    /** How often readiness re-checks the JWKS and the budget store (src/app/readiness.ts); probes read the last result. */
    ready_check_ms: z.number().int().min(100).max(60_000).default(2_000),
    /**
     * Serve gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl and similar
     * tools can list and describe the services without the .proto files. Off by default, as
     * opa-envoy-plugin's enable-reflection: it tells anyone who reaches the port every message
     * shape, which a production listener has no need to advertise.
     */
    grpc_reflection: z.boolean().default(false),
    /** How long SIGTERM waits for in-flight calls before closing connections. */
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(10_000),
    /** TLS (and mTLS) on both listeners; absent, plaintext. */
    tls: tlsSchema.optional(),
    admin: adminSchema.default(adminSchema.parse({})),
  })
  .strict();

/** The parsed `server` section, with defaults applied. */
export type ServerConfig = z.output<typeof serverSchema>;

/** The parsed `server.tls` section. */
export type TlsConfig = z.output<typeof tlsSchema>;

/** The parsed `server.admin` section, with defaults applied. */
export type AdminConfig = z.output<typeof adminSchema>;
