/**
 * Where command output goes. Results go to stdout; progress, status and errors go to stderr, so that
 * `strata consume --raw ... > file` and `--json | jq` get clean data.
 */
export interface CliIo {
  /** One line of results on stdout. */
  out(line: string): void;
  /** Raw bytes on stdout (consume --raw). */
  write(data: Buffer | string): void;
  /** One line of progress or status on stderr. */
  err(line: string): void;
}

export const processIo: CliIo = {
  out: (line) => void process.stdout.write(`${line}\n`),
  write: (data) => void process.stdout.write(data),
  err: (line) => void process.stderr.write(`${line}\n`),
};

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
