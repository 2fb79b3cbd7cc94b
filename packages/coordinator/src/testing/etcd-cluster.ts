import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface EtcdClusterOptions {
  /** 1 or 3 members (default 1). */
  members?: number;
  /** The etcd binary (default: $ETCD_BIN or /usr/bin/etcd). */
  binary?: string;
  /** How long to wait for a member to be healthy (default 20000 ms). */
  startTimeoutMs?: number;
}

interface Member {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  logFile: string;
  process: ChildProcess | undefined;
  paused: boolean;
}

const running = new Set<ChildProcess>();
const roots = new Set<string>();
let exitHookInstalled = false;

/**
 * Real etcd processes for tests: 1 or 3 members on free 127.0.0.1 ports, each in its own temp dir,
 * with `--pre-vote` so a member that rejoins does not force an election.
 *
 * ```ts
 * const etcd = await EtcdCluster.start({ members: 3 });
 * etcd.url;            // 'etcd://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3' for createMetadataStore
 * etcd.endpoints;      // ['127.0.0.1:p1', ...]
 * await etcd.kill(1);  // SIGKILL member 1 and wait for it to exit
 * await etcd.restart(1); // start it again on its data dir and ports; waits until healthy
 * etcd.pause(0); etcd.resume(0); // SIGSTOP / SIGCONT
 * await etcd.stop();   // SIGKILL every member by pid and delete the temp dirs (call in afterAll)
 * ```
 * If the test process exits without stop(), an exit hook still SIGKILLs the members and removes the dirs.
 */
export class EtcdCluster {
  private constructor(
    private readonly members: Member[],
    private readonly root: string,
    private readonly binary: string,
    private readonly token: string,
    private readonly startTimeoutMs: number,
  ) {}

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const count = options.members ?? 1;
    if (!Number.isInteger(count) || count < 1 || count > 7) throw new RangeError(`members must be 1..7, got ${count}`);
    // A probed free port can be taken by another process before etcd binds it: try fresh ports twice more.
    for (let attempt = 1; ; attempt++) {
      try {
        return await EtcdCluster.startOnce(count, options);
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  private static async startOnce(count: number, options: EtcdClusterOptions): Promise<EtcdCluster> {
    const root = await mkdtemp(join(tmpdir(), 'strata-etcd-'));
    roots.add(root);
    installExitHook();
    const members: Member[] = [];
    for (let i = 0; i < count; i++) {
      const name = `m${i}`;
      members.push({
        name, clientPort: await freePort(), peerPort: await freePort(), dataDir: join(root, name),
        logFile: join(root, `${name}.log`), process: undefined, paused: false,
      });
    }
    const cluster = new EtcdCluster(
      members, root, options.binary ?? process.env.ETCD_BIN ?? '/usr/bin/etcd', `strata-${process.pid}-${Date.now()}`,
      options.startTimeoutMs ?? 20_000,
    );
    try {
      for (let i = 0; i < count; i++) cluster.spawn(i);
      await Promise.all(members.map((_, i) => cluster.waitHealthy(i)));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** `127.0.0.1:<client port>` of each member, by index. */
  get endpoints(): string[] {
    return this.members.map((m) => `127.0.0.1:${m.clientPort}`);
  }

  /** `etcd://` URL of all members, or of the given member indices only. */
  urlOf(...indices: number[]): string {
    const eps = indices.length === 0 ? this.endpoints : indices.map((i) => this.endpoints[i] as string);
    return `etcd://${eps.join(',')}`;
  }

  get url(): string {
    return this.urlOf();
  }

  /** The member's pid, or undefined when it is not running. */
  pid(i: number): number | undefined {
    return this.member(i).process?.pid;
  }

  /** Where member i writes its log (useful when a test fails). */
  logFile(i: number): string {
    return this.member(i).logFile;
  }

  async kill(i: number): Promise<void> {
    const m = this.member(i);
    const p = m.process;
    if (!p) return;
    await killAndWait(p);
    m.process = undefined;
    m.paused = false;
  }

  /** Kills member i if it runs, starts it again on the same data dir and ports, and waits until healthy. */
  async restart(i: number): Promise<void> {
    await this.kill(i);
    this.spawn(i);
    await this.waitHealthy(i);
  }

  pause(i: number): void {
    const m = this.member(i);
    if (!m.process?.pid) throw new Error(`etcd member ${i} is not running`);
    process.kill(m.process.pid, 'SIGSTOP');
    m.paused = true;
  }

  resume(i: number): void {
    const m = this.member(i);
    if (!m.process?.pid) throw new Error(`etcd member ${i} is not running`);
    process.kill(m.process.pid, 'SIGCONT');
    m.paused = false;
  }

  /**
   * The index of the member that leads the raft group now, asked of the running, not paused members
   * (undefined when none answers or there is no leader).
   */
  async leaderIndex(): Promise<number | undefined> {
    for (const m of this.members) {
      if (!m.process || m.paused) continue;
      try {
        const res = await fetch(`http://127.0.0.1:${m.clientPort}/v3/maintenance/status`, {
          method: 'POST', body: '{}', signal: AbortSignal.timeout(1_000),
        });
        const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
        if (!body.leader || body.leader === '0') continue;
        if (body.leader === body.header?.member_id) return this.members.indexOf(m);
        // Another member leads: find it by asking each for its own id.
        for (const [i, other] of this.members.entries()) {
          if (!other.process || other.paused || other === m) continue;
          const r = await fetch(`http://127.0.0.1:${other.clientPort}/v3/maintenance/status`, {
            method: 'POST', body: '{}', signal: AbortSignal.timeout(1_000),
          });
          if (((await r.json()) as { header?: { member_id?: string } }).header?.member_id === body.leader) return i;
        }
      } catch {
        // not answering: ask the next one
      }
    }
    return undefined;
  }

  /** Waits until member i answers /health with a leader. */
  async waitHealthy(i: number, timeoutMs = this.startTimeoutMs): Promise<void> {
    const m = this.member(i);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!m.process || m.process.exitCode !== null) throw new Error(`etcd member ${i} exited; see ${m.logFile}`);
      try {
        const res = await fetch(`http://127.0.0.1:${m.clientPort}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`etcd member ${i} not healthy after ${timeoutMs} ms; see ${m.logFile}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGKILLs every member by pid, waits for them to exit, and deletes the temp dirs. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    await rm(this.root, { recursive: true, force: true });
    roots.delete(this.root);
  }

  private member(i: number): Member {
    const m = this.members[i];
    if (!m) throw new RangeError(`no etcd member ${i}`);
    return m;
  }

  private spawn(i: number): void {
    const m = this.member(i);
    const initialCluster = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', this.token,
      '--pre-vote',
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    const fd = openSync(m.logFile, 'a');
    try {
      const child = spawn(this.binary, args, { stdio: ['ignore', fd, fd] });
      m.process = child;
      running.add(child);
      child.once('exit', () => running.delete(child));
    } finally {
      closeSync(fd);
    }
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of running) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  });
}

async function killAndWait(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill('SIGKILL');
  await exited;
}

/** A port free on 127.0.0.1 right now (bind port 0, read it, release it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
