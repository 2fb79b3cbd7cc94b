/**
 * A bookie process for tests: the same composition root `strata bookie` runs (startBookie), with
 * flags parsed by the same loadConfig. BookieProcesses uses it when the CLI is not built or
 * STRATA_TEST_BOOKIE_CLI=0.
 */
import { createLogger, loadConfig } from '@strata/runtime';
import { bookieConfigSpec, startBookie } from '../main.js';

const config = loadConfig(bookieConfigSpec, { argv: process.argv.slice(2) });
const logger = createLogger({ level: config.logLevel, name: 'bookie' });
const running = await startBookie(config, { logger });
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  running.stop().then(() => process.exit(0), (err: unknown) => {
    logger.error({ err }, 'stop failed');
    process.exit(1);
  });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
