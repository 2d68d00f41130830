/**
 * `signalbox serve`: the gRPC and HTTP servers, until SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { startSignalbox } from '../app/app.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../core/log.js';

/**
 * `signalbox serve [--config FILE]` (or SIGNALBOX_CONFIG): runs the servers the config
 * describes; on SIGTERM or SIGINT drains the calls in flight and returns 0.
 */
export async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } }, strict: true });
  const config = loadConfig(values.config ?? process.env.SIGNALBOX_CONFIG);
  const logger = createLogger(config.log.level);
  const running = await startSignalbox(config, logger);
  await new Promise<void>((done) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'shutting down: draining in-flight calls');
      running.close().then(done, done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
