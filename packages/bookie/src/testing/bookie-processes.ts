import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMetadataStore } from '@strata/coordinator';
import { freePort } from '@strata/coordinator/testing';
import { silentLogger } from '@strata/runtime';
import { COOKIES_PREFIX } from '../server/identity.js';

interface BookieProc {
  id: string;
  grpcPort: number;
  httpPort: number;
  dataDir: string;
  logFile: string;
  process: ChildProcess | undefined;
}

const here = dirname(fileURLToPath(import.meta.url));
const live = new Set<ChildProcess>();
let exitHook = false;

export interface BookieProcessesOptions {
  metadataUrl: string;
  /** Cluster name (metadata key prefix), default `standalone`. */
  cluster?: string;
  /** Registration session TTL (default 2000 ms: the smallest etcd handles well). */
  sessionTtlMs?: number;
  /** Extra flags for every bookie. */
  extraArgs?: string[];
  startTimeoutMs?: number;
}

/**
 * Real bookie processes for tests, each with its own data dir and fixed free ports (so a restart
 * after kill -9 comes back at the same address with the same data).
 *
 * ```ts
 * const bookies = await BookieProcesses.create({ metadataUrl: etcd.url });
 * await bookies.start('b1');   // waits for /readyz (registered in metadata)
 * await bookies.kill('b1');    // SIGKILL, waits for exit
 * await bookies.start('b1');   // same ports, same data dir: journal replay
 * bookies.pause('b1'); bookies.resume('b1'); // SIGSTOP / SIGCONT
 * await bookies.destroy('b1'); // kill and delete its data (and its cookie record) for good
 * await bookies.stop();        // in afterAll: SIGKILL all by pid, delete temp dirs
 * ```
 * The process is `node packages/cli/dist/bin.js bookie ...` (the real `strata bookie`); with
 * STRATA_TEST_BOOKIE_CLI=0, or before the CLI is built, this package's dist/testing/bookie-main.js
 * (the same startBookie and flags, without the other roles).
 */
export class BookieProcesses {
  private readonly bookies = new Map<string, BookieProc>();

  private constructor(private readonly root: string, private readonly options: BookieProcessesOptions) {}

  static async create(options: BookieProcessesOptions): Promise<BookieProcesses> {
    const root = await mkdtemp(join(tmpdir(), 'strata-bookies-'));
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const p of live) p.kill('SIGKILL');
      });
    }
    return new BookieProcesses(root, options);
  }

  get dir(): string {
    return this.root;
  }

  address(id: string): string {
    return `127.0.0.1:${this.get(id).grpcPort}`;
  }

  pid(id: string): number | undefined {
    return this.get(id).process?.pid;
  }

  async start(id: string): Promise<void> {
    let b = this.bookies.get(id);
    if (!b) {
      b = { id, grpcPort: await freePort(), httpPort: await freePort(), dataDir: join(this.root, id), logFile: join(this.root, `${id}.log`), process: undefined };
      this.bookies.set(id, b);
    }
    if (b.process) throw new Error(`bookie ${id} is already running`);
    const args = [
      '--metadata-url', this.options.metadataUrl, '--cluster', this.options.cluster ?? 'standalone', '--bookie-id', id,
      '--data-dir', b.dataDir, '--grpc-host', '127.0.0.1', '--grpc-port', String(b.grpcPort), '--http-host', '127.0.0.1',
      '--http-port', String(b.httpPort), '--session-ttl-ms', String(this.options.sessionTtlMs ?? 2000), '--log-level', 'info',
      ...(this.options.extraArgs ?? []),
    ];
    const cli = resolve(here, '../../../cli/dist/bin.js');
    const useCli = process.env.STRATA_TEST_BOOKIE_CLI !== '0' && existsSync(cli);
    const command = useCli ? [cli, 'bookie', ...args] : [resolve(here, '../../dist/testing/bookie-main.js'), ...args];
    const fd = openSync(b.logFile, 'a');
    const child = spawn(process.execPath, command, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    b.process = child;
    live.add(child);
    const proc = b;
    child.once('exit', () => {
      live.delete(child);
      if (proc.process === child) proc.process = undefined;
    });
    await this.waitReady(b, child);
  }

  /** SIGKILL and wait for the exit. */
  async kill(id: string): Promise<void> {
    const child = this.get(id).process;
    if (!child) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  }

  pause(id: string): void {
    this.get(id).process?.kill('SIGSTOP');
  }

  resume(id: string): void {
    this.get(id).process?.kill('SIGCONT');
  }

  /**
   * Kill and remove its data: the bookie is gone for good. Its cookie record goes too, as an operator
   * retires a lost bookie's id (decision 0088), so that a later start(id) is a new, empty bookie under
   * the same id rather than a refused start.
   */
  async destroy(id: string): Promise<void> {
    await this.kill(id);
    await rm(this.get(id).dataDir, { recursive: true, force: true });
    const store = await createMetadataStore(this.options.metadataUrl, { logger: silentLogger(), cluster: this.options.cluster ?? 'standalone' });
    try {
      await store.delete(COOKIES_PREFIX + id);
    } finally {
      await store.close();
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.bookies.keys()].map((id) => this.kill(id)));
    if (!process.env.STRATA_TEST_KEEP_DIRS) await rm(this.root, { recursive: true, force: true });
  }

  private get(id: string): BookieProc {
    const b = this.bookies.get(id);
    if (!b) throw new Error(`no bookie ${id}`);
    return b;
  }

  private async waitReady(b: BookieProc, child: ChildProcess): Promise<void> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`bookie ${b.id} exited during start-up; see ${b.logFile}`);
      try {
        const res = await fetch(`http://127.0.0.1:${b.httpPort}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`bookie ${b.id} not ready after ${this.options.startTimeoutMs ?? 30_000} ms; see ${b.logFile}`);
  }
}
