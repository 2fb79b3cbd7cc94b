/**
 * The logging seam. The SDK is silent unless the application passes a logger: either a
 * pino-compatible object (`logger`) or pulsar-client's `log(level, file, line, message)` callback.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** pulsar-client's log levels (same numbers). */
export const LogLevel = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 } as const;
export type LogLevel = (typeof LogLevel)[keyof typeof LogLevel];

/** pulsar-client's log callback shape. */
export type LogHandler = (level: LogLevel, file: string, line: number, message: string) => void;

const noop = (): void => {};

/** A logger that drops everything: the default. */
export const silentLogger: Logger = {
  debug: noop, info: noop, warn: noop, error: noop,
  child: () => silentLogger,
};

/**
 * Adapts pulsar-client's `log` callback (and its `logLevel` threshold) to the Logger seam. `handler`
 * may be a getter (Client.setLogHandler's, which can change or be unset at any time).
 */
export function loggerFromHandler(handler: LogHandler | (() => LogHandler | undefined), minLevel: LogLevel = LogLevel.INFO, bindings: Record<string, unknown> = {}, dynamic = false): Logger {
  const emit = (level: LogLevel) => (obj: object, msg?: string) => {
    if (level < minLevel) return;
    const target = dynamic ? (handler as () => LogHandler | undefined)() : (handler as LogHandler);
    if (!target) return;
    const fields = { ...bindings, ...obj };
    const component = typeof fields.component === 'string' ? fields.component : 'client';
    const text = `${msg ?? ''} ${JSON.stringify(fields, errorReplacer)}`.trim();
    try {
      target(level, component, 0, text);
    } catch {
      // A throwing log handler must not break the SDK.
    }
  };
  return {
    debug: emit(LogLevel.DEBUG),
    info: emit(LogLevel.INFO),
    warn: emit(LogLevel.WARN),
    error: emit(LogLevel.ERROR),
    child: (more) => loggerFromHandler(handler, minLevel, { ...bindings, ...more }, dynamic),
  };
}

function errorReplacer(_key: string, value: unknown): unknown {
  return value instanceof Error ? { message: value.message, code: (value as { code?: unknown }).code } : value;
}
