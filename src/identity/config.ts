/** The `identity` section: where keys come from, which issuers, audiences and algorithms are accepted, and how claims map to the caller. */
import { z } from 'zod';
import { listOrString } from '../core/config-values.js';

/** Algorithms allowed when the config does not narrow them: asymmetric only, and the only ones allowed at all. */
export const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const ASYMMETRIC_ALGORITHMS = new Set<string>(DEFAULT_ALGORITHMS);

/** The `identity` section. */
export const identitySchema = z
  .object({
    header: z.string().min(1).transform((h) => h.toLowerCase()).default('authorization'),
    /** The scheme before the token ("Bearer"); empty when the header holds the bare token. */
    scheme: z.string().default('Bearer'),
    jwks_url: z.string().url().optional(),
    jwks_file: z.string().min(1).optional(),
    issuer: listOrString.default([]),
    audience: listOrString.default([]),
    algorithms: listOrString
      .default([...DEFAULT_ALGORITHMS])
      .refine((algs) => algs.length > 0 && algs.every((a) => ASYMMETRIC_ALGORITHMS.has(a)), {
        message: `only asymmetric algorithms are allowed (${DEFAULT_ALGORITHMS.join(', ')}); none and HS* never are`,
      }),
    clock_tolerance_s: z.number().int().min(0).max(600).default(30),
    required_claims: listOrString.default(['exp', 'sub']),
    jwks_cache_max_age_ms: z.number().int().min(1000).default(600_000),
    jwks_cooldown_ms: z.number().int().min(0).default(30_000),
    jwks_timeout_ms: z.number().int().min(100).max(60_000).default(5_000),
    /** Request headers naming the agent session (`input.session`), first present wins. */
    session_headers: listOrString
      .default(['x-signalbox-session', 'mcp-session-id'])
      .transform((headers) => headers.map((h) => h.toLowerCase())),
    claims: z
      .object({
        subject: z.string().default('sub'),
        roles: z.string().default('roles'),
        scopes: z.string().default('scope'),
        team: z.string().default('team'),
        tenant: z.string().default('tenant'),
        client_id: z.string().default('azp'),
      })
      .strict()
      .default({ subject: 'sub', roles: 'roles', scopes: 'scope', team: 'team', tenant: 'tenant', client_id: 'azp' }),
  })
  .strict()
  .superRefine((identity, ctx) => {
    if (identity.jwks_url && identity.jwks_file) {
      ctx.addIssue({ code: 'custom', path: ['jwks_file'], message: 'set either jwks_url or jwks_file, not both' });
    }
    if (identity.jwks_url || identity.jwks_file) {
      if (identity.issuer.length === 0) ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'required when a JWKS is configured' });
      if (identity.audience.length === 0) ctx.addIssue({ code: 'custom', path: ['audience'], message: 'required when a JWKS is configured' });
    }
  });

/** The parsed `identity` section, with defaults applied and header names lower-cased. */
export type IdentityConfig = z.output<typeof identitySchema>;
