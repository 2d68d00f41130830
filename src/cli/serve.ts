/**
 * `signalbox serve`: the gRPC and HTTP servers, until SIGTERM or SIGINT; with `server.workers`
 * above 1, as a primary process and that many workers (src/app/cluster.ts).
 */
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { runPrimary, runWorker, workerPlan } from '../app/cluster.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../core/log.js';

/**
 * `signalbox serve [--config FILE]` (or SIGNALBOX_CONFIG): runs the servers the config
 * describes; on SIGTERM or SIGINT drains the calls in flight and returns 0 (1 when the workers
 * could not start or kept crashing).
 */
export async function serve(args: string[]): Promise<number> {
  // A worker takes its config from the primary, which validated it once.
  if (cluster.isWorker) return runWorker();
  const { values } = parseArgs({ args, options: { config: { type: 'string' } }, strict: true });
  const config = loadConfig(values.config ?? process.env.SIGNALBOX_CONFIG);
  const logger = createLogger(config.log.level);
  const { workers, cpuLimit } = workerPlan(config);
  if (cpuLimit) {
    logger.info({ workers, cpu_limit: cpuLimit.cpus, cpu_limit_file: cpuLimit.file }, `server.workers auto: ${workers}, the CPU limit rounded up`);
  }
  if (workers > 1) return runPrimary(config, logger, workers);
  // Loaded here, not above: a primary never serves, and never needs the pipeline's modules.
  const { startSignalbox } = await import('../app/app.js');
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
