/**
 * The whole configuration document, composed of the sections each module owns (its own
 * `config.ts`). It is validated once at start-up and then frozen. Unknown keys are errors, so a
 * typo is caught, not ignored.
 */
import { z } from 'zod';
import { auditSchema } from '../audit/config.js';
import { policySchema } from '../bundles/config.js';
import { logSchema } from '../core/log-config.js';
import { routingSchema } from '../decide/config.js';
import { budgetsSchema, storeSchema } from '../enforce/config.js';
import { identitySchema } from '../identity/config.js';
import { ledgerSchema } from '../ledger/config.js';
import { contentSchema, destinationsSchema, llmSchema } from '../inspect/config.js';
import { serverSchema } from '../transport/config.js';
import { vaultSchema } from '../vault/config.js';

/**
 * The configuration document: one strict section per module, each defaulted as a whole, so an
 * empty file is a working config.
 */
export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    policy: policySchema.default(policySchema.parse({})),
    identity: identitySchema.default(identitySchema.parse({})),
    audit: auditSchema.default(auditSchema.parse({})),
    store: storeSchema.default(storeSchema.parse({})),
    budgets: budgetsSchema.default(budgetsSchema.parse({})),
    llm: llmSchema.default(llmSchema.parse({})),
    content: contentSchema.default(contentSchema.parse({})),
    destinations: destinationsSchema.default(destinationsSchema.parse({})),
    routing: routingSchema.default(routingSchema.parse({})),
    vault: vaultSchema.default(vaultSchema.parse({})),
    ledger: ledgerSchema.default(ledgerSchema.parse({})),
    log: logSchema.default(logSchema.parse({})),
  })
  .strict();

/** The validated configuration every module reads its section from; `loadConfig` (load.ts) returns it deeply frozen. */
export type SignalboxConfig = z.output<typeof configSchema>;
