import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

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
