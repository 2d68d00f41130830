/** The `log` section. */
import { z } from 'zod';

/** The `log` section. */
export const logSchema = z
  .object({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

/** The parsed `log` section, with defaults applied. */
export type LogConfig = z.output<typeof logSchema>;
