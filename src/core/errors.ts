/**
 * Signalbox's one error class: a stable `code` from the catalogue (codes.ts), a message safe to
 * show an operator, structured details for logs, and the cause, which is logged, never returned.
 */
import { clientAnswer, type ClientAnswer, type ClientCode, type ErrorCode } from './codes.js';

/**
 * Base class for every error Signalbox raises on purpose. `message` is safe to show to an
 * operator; `details` holds structured fields for logs; `cause` keeps the underlying error for
 * logs only and is never returned to a caller.
 */
export class SignalboxError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SignalboxError';
    this.code = code;
    this.details = Object.freeze({ ...(options.details ?? {}) });
  }
}

/** Type guard for callers that must tell a deliberate, coded failure from an unexpected throw. */
export function isSignalboxError(error: unknown): error is SignalboxError {
  return error instanceof SignalboxError;
}

/** Normalises anything thrown (including the strings opa-wasm throws) into a SignalboxError. */
export function asSignalboxError(error: unknown, fallback: ErrorCode, message: string): SignalboxError {
  if (error instanceof SignalboxError) return error;
  return new SignalboxError(fallback, message, { cause: error });
}

/** A short description of a thrown value for logs, never for callers. */
export function describeCause(error: unknown): string {
  if (error instanceof Error) {
    // A SignalboxError wraps what actually failed (an ioredis timeout, a refused connection):
    // the log needs both, so follow the cause chain a few levels.
    const parts = [error.message];
    let cause: unknown = error.cause;
    for (let depth = 0; depth < 3 && cause !== undefined && cause !== null; depth++) {
      parts.push(cause instanceof Error ? cause.message : String(cause));
      cause = cause instanceof Error ? cause.cause : undefined;
    }
    return parts.join(': ');
  }
  if (typeof error === 'string') return error;
  if (error && typeof error === 'object' && 'message' in error) return String((error as { message: unknown }).message);
  return String(error);
}

/**
 * What a client is told about a thrown value: the catalogue's answer for its code (anything that
 * is not a SignalboxError is internal_error), and the text it reads: the catalogue's message,
 * or the error's own where the catalogue says it is written for the caller.
 */
export function answerFor(error: unknown): ClientAnswer & { readonly code: ClientCode; readonly text: string } {
  const answer = clientAnswer(error instanceof SignalboxError ? error.code : 'internal_error');
  const own = answer.ownMessage && error instanceof SignalboxError && error.code === answer.code;
  return { ...answer, text: own ? error.message : answer.message };
}
