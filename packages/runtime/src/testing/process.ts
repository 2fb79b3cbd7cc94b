import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';

export interface SpawnOptions {
  command: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** Where stdout and stderr go (appended); default: kept in memory, last 64 KiB. */
  logFile?: string;
}

const TAIL_BYTES = 64 * 1024;

/**
 * A child process a test started and must stop: by PID, with real signals (SIGKILL for crashes,
 * SIGSTOP/SIGCONT for pauses). Output is kept (bounded) so a failing test can show it.
 */
export class ChildProcessHandle {
  private output = '';
  private log: WriteStream | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(private readonly child: ChildProcess, readonly description: string, logFile?: string) {
    if (logFile) this.log = createWriteStream(logFile, { flags: 'a' });
    const onData = (chunk: Buffer) => {
      this.log?.write(chunk);
      this.output = (this.output + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static spawn(options: SpawnOptions): ChildProcessHandle {
    const child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ChildProcessHandle(child, `${options.command} ${options.args.join(' ')}`, options.logFile);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`process did not start: ${this.description}`);
    return this.child.pid;
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last 64 KiB of stdout and stderr. */
  get recentOutput(): string {
    return this.output;
  }

  /** Resolves when the output contains `pattern`; rejects if the process exits first or on timeout. */
  async waitForOutput(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.output);
      if (match) return match;
      if (!this.isRunning) throw new Error(`${this.description} exited before printing ${pattern}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern} from ${this.description}:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Polls an HTTP URL until it answers 200. */
  async waitForHttp(url: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (!this.isRunning) throw new Error(`${this.description} exited while waiting for ${url}:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${url} from ${this.description}:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (this.isRunning) process.kill(this.pid, signal);
  }

  /** kill -9 and wait until the process is gone. */
  async kill(): Promise<void> {
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await this.exited;
  }

  pause(): void {
    this.signal('SIGSTOP');
  }

  resume(): void {
    this.signal('SIGCONT');
  }

  /** SIGTERM, then SIGKILL after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.isRunning) {
      await this.exited;
      this.log?.end();
      return;
    }
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    this.log?.end();
  }
}
