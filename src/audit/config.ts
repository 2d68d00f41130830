/** The `audit` section: where decision records go and which header values are masked in them. */
import { z } from 'zod';
import { headerName, listOrString } from '../core/config-values.js';

/** Spans and logs to an OpenTelemetry collector, over OTLP/HTTP (JSON). */
const otlpSchema = z
  .object({
    /** The collector's OTLP/HTTP base URL; /v1/traces and /v1/logs are appended. */
    endpoint: z.string().url().refine((url) => /^https?:/.test(url), 'must be an http:// or https:// URL'),
    headers: z.record(headerName, z.string()).default({}),
    service_name: z.string().min(1).default('signalbox'),
    min_delay_ms: z.number().int().min(10).default(1_000),
    max_delay_ms: z.number().int().min(10).default(5_000),
    buffer_size_limit: z.number().int().min(1).default(10_000),
    timeout_ms: z.number().int().min(100).default(10_000),
  })
  .strict()
  .refine((o) => o.min_delay_ms <= o.max_delay_ms, { message: 'min_delay_ms must not exceed max_delay_ms', path: ['min_delay_ms'] });

/** Shipping records to a decision-log service (OPA's Decision Log Service API). */
const decisionLogsSchema = z
  .object({
    /** The full URL records are POSTed to (OPA's service URL and its resource, /logs by default). */
    url: z.string().url().refine((url) => /^https?:/.test(url), 'must be an http:// or https:// URL'),
    /** Extra request headers, for example `authorization: Bearer ${TOKEN}`; never logged. */
    headers: z.record(headerName, z.string()).default({}),
    /** Uploads go out after a random delay between these two (OPA's reporting.min/max_delay_seconds). */
    min_delay_ms: z.number().int().min(10).default(1_000),
    max_delay_ms: z.number().int().min(10).default(10_000),
    /** The most bytes of events in one upload, before compression (OPA's upload_size_limit_bytes). */
    upload_size_limit_bytes: z.number().int().min(1024).default(32_768),
    /** The most records waiting to be shipped; beyond it the oldest are dropped and counted. */
    buffer_size_limit: z.number().int().min(1).default(10_000),
    timeout_ms: z.number().int().min(100).default(10_000),
  })
  .strict()
  .refine((d) => d.min_delay_ms <= d.max_delay_ms, { message: 'min_delay_ms must not exceed max_delay_ms', path: ['min_delay_ms'] });

/** The `audit` section. */
export const auditSchema = z
  .object({
    /** JSON-lines file the hash-chained decision records are appended to. */
    path: z.string().min(1).default('audit/decisions.jsonl'),
    /** Request headers whose values are replaced by a marker in the audited input. */
    mask_headers: listOrString
      .default(['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'api-key'])
      .transform((headers) => headers.map((h) => h.toLowerCase())),
    /**
     * buffered: records are written in the background; a crash can lose the last few answered
     * decisions. fsync: a decision is answered only once its record is on disk (fsynced, in
     * groups, so throughput holds); when that takes longer than durable_timeout_ms the request is
     * denied with 503 audit_write_failed instead.
     */
    durability: z.enum(['buffered', 'fsync']).default('buffered'),
    /**
     * buffered: how long the first queued record waits for others before they are written
     * together (0: as soon as the previous write finished). Each write is a thread-pool round
     * trip and a system call; under load, waiting a few milliseconds makes it one per batch. A
     * crash can lose this much more of the trail. fsync mode never waits.
     */
    flush_ms: z.number().int().min(0).max(1000).default(10),
    /**
     * full: each record carries the whole policy input, masked (headers, parsed body, spend
     * view...). summary: who, what and what was found (identity, actor, session, door, the LLM
     * facts, tool names, content findings, destinations, method/path/host and the body's size
     * and SHA-256), a quarter of the bytes, for deployments where the audit's CPU matters more
     * than keeping every input in full.
     */
    input: z.enum(['full', 'summary']).default('full'),
    durable_timeout_ms: z.number().int().min(10).max(60_000).default(5_000),
    /** Rotate the file once it holds this many bytes (0: never); the chain runs on across files. */
    rotate_bytes: z.number().int().min(0).default(0).refine((n) => n === 0 || n >= 4096, 'must be 0 (no rotation) or at least 4096'),
    /** Rotated files kept; older ones are deleted (0: keep all). */
    keep_files: z.number().int().min(0).default(0),
    /** Also ship every record to a decision-log service (README, "Audit trail"). */
    decision_logs: decisionLogsSchema.optional(),
    /** Export a span per decision and each record as an OTLP log to an OpenTelemetry collector. */
    otlp: otlpSchema.optional(),
  })
  .strict();

/** The validated `audit` section. */
export type AuditConfig = z.output<typeof auditSchema>;
