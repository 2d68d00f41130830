/**
 * The short form of a simulated request, as policy tests and `signalbox eval --request` write it:
 * a user, a route, a model, a body, and the door it comes through. See README, "Testing
 * policies". simulate.ts turns it into the request a real gateway would send.
 */
import { z } from 'zod';

/** Doors a simulated request can come through, by their short names. */
export const SIMULATED_DOORS = ['native', 'envoy', 'envoy-http', 'nginx', 'caddy', 'opa', 'kong', 'litellm'] as const;
/** A door a simulated request can come through. */
export type SimulatedDoor = (typeof SIMULATED_DOORS)[number];

const jsonValue: z.ZodType<unknown> = z.unknown();

/** A caller: the claims of the token minted for them. Keys other than these are extra claims. */
export const userSchema = z
  .object({
    sub: z.string().min(1),
    roles: z.array(z.string()).optional(),
    team: z.string().optional(),
    tenant: z.string().optional(),
    scope: z.union([z.string(), z.array(z.string())]).optional(),
  })
  .catchall(jsonValue);

/** How the minted token deviates from a valid one, to test identity failures. */
export const tokenShapeSchema = z
  .object({
    /** Seconds from the frozen clock to `exp` (default 300; negative: expired). */
    expires_in: z.number().int().optional(),
    /** Seconds from the frozen clock to `nbf` (positive: not yet valid). */
    not_before_in: z.number().int().optional(),
    issuer: z.string().optional(),
    audience: z.union([z.string(), z.array(z.string())]).optional(),
    /** Sign with a key the JWKS does not hold (same kid): token_signature_invalid. */
    untrusted_key: z.boolean().optional(),
    /** Sign with a kid the JWKS does not hold: token_key_not_found. */
    unknown_kid: z.boolean().optional(),
  })
  .strict();

const headerValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

/** The short form of a request. Every field is optional; see README, "Testing policies". */
export const shortRequestSchema = z
  .object({
    door: z.enum(SIMULATED_DOORS).optional(),
    /** A user named in the suite's `users`, or their claims inline. */
    user: z.union([z.string().min(1), userSchema]).optional(),
    /** The raw token to present (the header is "<scheme> <token>"), or how to bend the user's; null: none. */
    token: z.union([z.string(), tokenShapeSchema, z.null()]).optional(),
    /** The agent acting for the user: the token's `act.sub`. */
    agent: z.string().min(1).optional(),
    /** The OAuth client (the token's client_id claim, `azp` by default). */
    client_id: z.string().min(1).optional(),
    method: z.string().min(1).optional(),
    /** Path with query string; default /v1/chat/completions when a model or messages are named. */
    path: z.string().startsWith('/').optional(),
    host: z.string().optional(),
    model: z.string().optional(),
    /** One user message (shorthand for messages). */
    prompt: z.string().optional(),
    messages: z.array(jsonValue).optional(),
    /** Tool names (shaped for the API the path names) or tool objects as sent. */
    tools: z.array(z.union([z.string(), z.record(z.string(), jsonValue)])).optional(),
    /** An MCP tools/call (path default /mcp). */
    tool_call: z.object({ name: z.string().min(1), arguments: z.record(z.string(), jsonValue).optional() }).strict().optional(),
    max_tokens: z.number().int().positive().optional(),
    stream: z.boolean().optional(),
    /** The whole body: an object (sent as JSON) or text. Replaces model/messages/tools. */
    body: z.union([z.string(), z.record(z.string(), jsonValue), z.array(jsonValue)]).optional(),
    headers: z.record(z.string(), headerValue).optional(),
    /** The agent session (the first of identity.session_headers). */
    session: z.string().min(1).optional(),
    source_address: z.string().optional(),
    source_principal: z.string().optional(),
    context_extensions: z.record(z.string(), z.string()).optional(),
  })
  .strict();

/** A short-form request, parsed. */
export type ShortRequest = z.output<typeof shortRequestSchema>;
/** A caller, parsed: the claims of the token minted for them. */
export type SimulatedUser = z.output<typeof userSchema>;
/** How a minted token deviates from a valid one, parsed. */
export type TokenShape = z.output<typeof tokenShapeSchema>;
