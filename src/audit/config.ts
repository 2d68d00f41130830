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
  })
  .strict();

export type AuditConfig = z.output<typeof auditSchema>;
