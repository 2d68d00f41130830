/**
 * The `ledger` section: the spend ledger loaded from the audit trail (README, "Spend ledger").
 * The PostgreSQL URL is a secret (it usually carries a password): it is read from an environment
 * variable or a file, never written in the config, and never logged.
 */
import { z } from 'zod';

/** The `ledger` section. */
export const ledgerSchema = z
  .object({
    /** Load the audit trail into the ledger and serve /v1/ledger/*. */
    enabled: z.boolean().default(false),
    /** embedded: PGlite (Postgres in WASM) in `dir`, one process only. postgres: a server every replica shares. */
    database: z.enum(['embedded', 'postgres']).default('embedded'),
    /** The embedded database's data directory. */
    dir: z.string().min(1).default('ledger'),
    /** The environment variable holding the PostgreSQL URL (database: postgres). */
    postgres_url_env: z.string().min(1).default('SIGNALBOX_LEDGER_POSTGRES_URL'),
    /** A file holding the PostgreSQL URL instead (first line); wins over the environment variable. */
    postgres_url_file: z.string().min(1).optional(),
    /** How often the loader reads what the audit files gained. */
    poll_ms: z.number().int().min(50).max(600_000).default(2_000),
    /** Rows older than this many days are deleted by the loader (0: keep everything). */
    retention_days: z.number().int().min(0).default(0),
  })
  .strict();

/** The validated `ledger` section. */
export type LedgerConfig = z.output<typeof ledgerSchema>;
