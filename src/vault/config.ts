/** The `vault` section: the encrypted credential file. */
import { z } from 'zod';
import { DEFAULT_VAULT_FILE } from './file.js';

/** The `vault` section. */
export const vaultSchema = z
  .object({
    /** The encrypted credential file (`signalbox vault`); read when SIGNALBOX_VAULT_KEY is set, reloaded on change. */
    file: z.string().min(1).default(DEFAULT_VAULT_FILE),
  })
  .strict();

/** The parsed `vault` section, with defaults applied. */
export type VaultConfig = z.output<typeof vaultSchema>;
