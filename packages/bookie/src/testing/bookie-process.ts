import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The fixture that runs one bookie from the built dist (same flags as `strata bookie`). */
export const BOOKIE_FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'bookie-process.mjs');

export interface BookieProcessOptions {
  /** Default: a fresh temp dir. */
  dataDir?: string;
  /** Default 0 (a free port); restart() reuses the port first bound so the address stays the same. */
  grpcPort?: number;
  metadataUrl?: string;
  cluster?: string;
  /** More `strata bookie` flags, e.g. ['--journal-group-wait-ms', '2']. */
  args?: string[];
  startTimeoutMs?: number;
}

/**
 * A real bookie in its own process, for tests: real files, real fsync, real SIGKILL.
 * Always stop it (kill() or stop()) in afterEach/afterAll.
 */
export class BookieProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  /** The last lines the process printed (stdout and stderr), for failure messages. */
  readonly output: string[] = [];
  grpcPort = 0;
  httpPort = 0;
  bookieId = '';

  private constructor(
    readonly dataDir: string,
    private readonly options: BookieProcessOptions,
    /** Whether dataDir is a temp dir this object made (and destroy() removes). */
    private readonly ownsDataDir: boolean,
  ) {}

  static async start(options: BookieProcessOptions = {}): Promise<BookieProcess> {
    const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'strata-bookie-')));
    const p = new BookieProcess(dataDir, options, options.dataDir === undefined);
    await p.launch(options.grpcPort ?? 0);
    return p;
  }

  get address(): string {
    return `127.0.0.1:${this.grpcPort}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  private async launch(grpcPort: number): Promise<void> {
    const args = [
      BOOKIE_FIXTURE, '--data-dir', this.dataDir, '--grpc-host', '127.0.0.1', '--grpc-port', String(grpcPort),
      '--http-host', '127.0.0.1', '--http-port', '0', '--log-level', 'warn',
      ...(this.options.metadataUrl ? ['--metadata-url', this.options.metadataUrl] : []),
      ...(this.options.cluster ? ['--cluster', this.options.cluster] : []),
      ...(this.options.args ?? []),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const remember = (line: string) => {
      this.output.push(line);
      if (this.output.length > 200) this.output.shift();
    };
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', remember);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bookie did not start in time:\n${this.output.join('\n')}`)), this.options.startTimeoutMs ?? 30_000);
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
        remember(line);
        const m = /^READY (\d+) (\d+) (\S+)$/.exec(line);
        if (m) {
          clearTimeout(timer);
          this.grpcPort = Number(m[1]);
          this.httpPort = Number(m[2]);
          this.bookieId = m[3] as string;
          resolve();
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`bookie exited with ${String(code)} before it was ready:\n${this.output.join('\n')}`));
      });
    });
    try {
      await ready;
    } catch (err) {
      await this.kill();
      throw err;
    }
  }

  /** SIGKILL (or another signal) and wait for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.running) this.child?.kill(signal);
    await this.exited;
  }

  /** SIGTERM: a clean stop (checkpoint, deregistration). */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
  }

  /** SIGKILL and remove the temp data dir if this object made it. For afterEach/afterAll. */
  async destroy(): Promise<void> {
    await this.kill();
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /**
   * Starts the process again on the same data dir (after kill or stop), on the same port unless
   * `grpcPort` is given (0: a free one), so a test can move a bookie to another address.
   */
  async restart(options: { grpcPort?: number } = {}): Promise<void> {
    if (this.running) throw new Error('bookie is still running');
    await this.launch(options.grpcPort ?? this.grpcPort);
  }
}
