/**
 * Errors of the CLI layer. They carry the same shape as every Strata error (a stable `code`, `retriable`,
 * a native `cause`) so that the command wrapper can turn any of them into one line and an exit code
 * without looking at message text.
 */
export class CliError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  /** Process exit code the command ends with: 2 for bad usage (like most Unix tools), 1 otherwise. */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { cause?: unknown; retriable?: boolean; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.retriable = options?.retriable ?? false;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** A flag, argument or workload file the user must fix; nothing was sent anywhere. */
export class UsageError extends CliError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, { ...options, exitCode: 2 });
    this.name = 'UsageError';
  }
}

/** One line for stderr: the message and, when the error carries one, its stable code. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const message = err.message.split('\n')[0] ?? err.message;
    return typeof code === 'string' && code !== 'INVALID_ARGUMENT' && !message.includes(code) ? `${message} (${code})` : message;
  }
  return String(err);
}

/** The exit code for an error: its own if it is a CliError, else 1. */
export function exitCodeOf(err: unknown): number {
  return err instanceof CliError ? err.exitCode : 1;
}

/** Whether a receive() rejection is its timeout ("Failed to receive message: TimeOut"), not a failure. */
export function isReceiveTimeout(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'TIMEOUT';
}
