/** The `vault` section: the encrypted credential file. */
import { z } from 'zod';

/** The `vault` section. */
export const vaultSchema = z
  .object({
    /** The encrypted credential file (`signalbox vault`); read when SIGNALBOX_VAULT_KEY is set, reloaded on change. */
    file: z.string().min(1).default('vault/credentials.json'),
  })
  .strict();

export type VaultConfig = z.output<typeof vaultSchema>;
