/** The `routing` section: how providers take their credentials, which caller headers are stripped, and the circuit breaker. */
import { z } from 'zod';
import { headerName, listOrString } from '../core/config-values.js';
import { DEFAULT_BREAKER } from '../enforce/enforcer.js';

/** A provider name as policies and reports spell it (openai, anthropic, azure-eu). */
export const PROVIDER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** The `routing` section. */
export const routingSchema = z
  .object({
    /**
     * How each provider takes its API key, for providers whose scheme is not built in (see
     * src/decide/route.ts): the header and the text before the key ("Bearer ").
     */
    providers: z
      .record(
        z.string().regex(PROVIDER_NAME, 'provider names are letters, digits, . _ -'),
        z.object({ credential_header: headerName, credential_prefix: z.string().default('') }).strict(),
      )
      .default({}),
    /** Caller credential headers removed from the upstream request whenever Signalbox injects a provider credential. */
    strip_headers: listOrString.pipe(z.array(headerName)).default(['authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'x-goog-api-key']),
    /** Circuit breaker per provider, fed by usage reports (`upstream_status`, `outcome: timeout`). */
    breaker: z
      .object({
        /** Failures within failure_window_ms that open the breaker. */
        failure_threshold: z.number().int().min(1).max(10_000).default(DEFAULT_BREAKER.failureThreshold),
        failure_window_ms: z.number().int().min(100).max(86_400_000).default(DEFAULT_BREAKER.failureWindowMs),
        /** How long an open breaker keeps the provider out before one trial (half-open). */
        cool_down_ms: z.number().int().min(100).max(86_400_000).default(DEFAULT_BREAKER.coolDownMs),
      })
      .strict()
      .default({
        failure_threshold: DEFAULT_BREAKER.failureThreshold,
        failure_window_ms: DEFAULT_BREAKER.failureWindowMs,
        cool_down_ms: DEFAULT_BREAKER.coolDownMs,
      }),
  })
  .strict();

/** The parsed `routing` section, with defaults applied. */
export type RoutingConfig = z.output<typeof routingSchema>;
