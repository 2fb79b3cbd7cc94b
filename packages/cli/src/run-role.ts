import { ConfigError, createLogger, ErrorCode, describeConfig, loadConfig, routeGrpcLogs, type ConfigSpec } from '@strata/runtime';
import type { Role, RunningRole } from './roles.js';

/** Exit codes: 2 for bad configuration (one line naming the field), 1 for a failure to start. */
export const EXIT_CONFIG = 2;
export const EXIT_START_FAILED = 1;

export function printRoleHelp(name: string, summary: string, spec: ConfigSpec): void {
  process.stdout.write(`Usage: strata ${name} [flags]\n\n${summary}\n\nFlags (also STRATA_* env vars or a YAML --config file):\n${describeConfig(spec)}\n`);
}

/**
 * Runs one role as this process: load config, start, stop cleanly on the first SIGTERM/SIGINT (a second
 * one exits at once).
 */
export async function runRole(role: Pick<Role, 'name' | 'summary' | 'spec'>, argv: string[], start: (config: Record<string, unknown>, logger: ReturnType<typeof createLogger>) => Promise<RunningRole>): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    printRoleHelp(role.name, role.summary, role.spec);
    return;
  }
  let config: Record<string, unknown>;
  try {
    config = loadConfig(role.spec, { argv });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`strata ${role.name}: ${err.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw err;
  }
  const level = typeof config.logLevel === 'string' ? config.logLevel : 'info';
  const logger = createLogger({ level: level as 'info', name: role.name });
  routeGrpcLogs(logger);
  let running: RunningRole;
  try {
    running = await start(config, logger);
  } catch (err) {
    // A start-up check that found the configuration wrong (e.g. a bookie's cookie, decision 0088): exit 2.
    if ((err as { code?: unknown }).code === ErrorCode.CONFIG) {
      process.stderr.write(`strata ${role.name}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT_CONFIG);
    }
    logger.fatal({ err }, 'failed to start');
    process.stderr.write(`strata ${role.name}: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(EXIT_START_FAILED);
  }
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    logger.info({ signal }, 'shutting down');
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
