import { pino, type Logger as PinoLogger, type DestinationStream, type LoggerOptions } from 'pino';

/** The logger type the whole code base uses, so nothing else imports pino directly. */
export type Logger = PinoLogger;

/**
 * Paths pino censors wherever they appear, as a second line of defence: code never logs request
 * headers, bodies or tokens on purpose, but a mistake must not leak a credential.
 */
export const REDACTED_PATHS = [
  'authorization',
  'token',
  'password',
  'secret',
  'apiKey',
  'api_key',
  '*.authorization',
  '*.token',
  '*.password',
  '*.secret',
  '*.api_key',
  '*.apiKey',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["x-api-key"]',
];

/** Creates the process logger; `destination` lets tests capture NDJSON output. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'signalbox' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that discards everything, for tests and one-shot CLI commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
