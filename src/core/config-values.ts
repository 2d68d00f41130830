/**
 * Value parsers shared by the configuration sections every module owns: a list that may be
 * written as a comma-separated string (as environment variables are), a boolean that may come
 * from an environment variable, an HTTP header name.
 */
import { z } from 'zod';

/** A list of strings, or one comma-separated string; blanks are dropped. */
export const listOrString = z
  .union([z.string(), z.array(z.string())])
  .transform((value) => (Array.isArray(value) ? value : value.split(',')).map((s) => s.trim()).filter(Boolean));

/** A boolean that may also come from an environment variable as "true" or "false". */
export const envBoolean = z.preprocess((value) => (value === 'true' ? true : value === 'false' ? false : value), z.boolean());

/** An HTTP header name (RFC 9110 token), lower-cased. */
export const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
  .transform((h) => h.toLowerCase());
