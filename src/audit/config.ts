/** The `audit` section: where decision records go and which header values are masked in them. */
import { z } from 'zod';
import { listOrString } from '../core/config-values.js';

/** The `audit` section. */
export const auditSchema = z
  .object({
    /** JSON-lines file the hash-chained decision records are appended to. */
    path: z.string().min(1).default('audit/decisions.jsonl'),
    /** Request headers whose values are replaced by a marker in the audited input. */
    mask_headers: listOrString
      .default(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'api-key'])
      .transform((headers) => headers.map((h) => h.toLowerCase())),
    /**
     * buffered: records are written in the background; a crash can lose the last few answered
     * decisions. fsync: a decision is answered only once its record is on disk (fsynced, in
     * groups, so throughput holds); when that takes longer than durable_timeout_ms the request is
     * denied with 503 audit_write_failed instead.
     */
    durability: z.enum(['buffered', 'fsync']).default('buffered'),
    durable_timeout_ms: z.number().int().min(10).max(60_000).default(5_000),
    /** Rotate the file once it holds this many bytes (0: never); the chain runs on across files. */
    rotate_bytes: z.number().int().min(0).default(0).refine((n) => n === 0 || n >= 4096, 'must be 0 (no rotation) or at least 4096'),
    /** Rotated files kept; older ones are deleted (0: keep all). */
    keep_files: z.number().int().min(0).default(0),
  })
  .strict();

/** The validated `audit` section. */
export type AuditConfig = z.output<typeof auditSchema>;
