import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** The levels a role's `logLevel` takes (pino's, `silent` for none). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const satisfies readonly LevelWithSilent[];

/** The root logger of a process; components take `logger.child({ component })` from their caller. */
export function createLogger(options: { level?: LevelWithSilent; name?: string; pretty?: boolean } = {}): Logger {
  return pino({
    name: options.name,
    level: options.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that drops everything: for tests and for libraries given no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
