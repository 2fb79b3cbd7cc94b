import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { EtcdCluster } from '@strata/coordinator/testing';
import { SERVER_NODE_FLAGS } from '@strata/runtime';
import { ChildProcessHandle, freePorts, spawnRole, strataBin, tempDir } from '@strata/runtime/testing';
import type { Cluster, ClusterNode, EtcdMemberNode } from './cluster.js';

export interface ProcessClusterOptions {
  etcdMembers?: 1 | 3;
  bookies?: number;
  brokers?: number;
  coordinators?: number;
  /** Extra flags for every broker / bookie / coordinator. */
  brokerFlags?: Record<string, string | number | boolean>;
  bookieFlags?: Record<string, string | number | boolean>;
  coordinatorFlags?: Record<string, string | number | boolean>;
  /** Keep process logs here (default: the cluster's temp dir). */
  logDir?: string;
  /**
   * How long a role may take to answer /readyz (default 90 s: these machines are shared and loaded,
   * and a broker restarted after kill -9 may wait for its old session to expire).
   */
  readyTimeoutMs?: number;
  /**
   * Run each broker as its own uid (`setpriv`, needs root) so that iptables can tell its packets from
   * everyone else's on loopback: what `cutFromEtcd` needs (decision 0075). Default false.
   */
  brokerUids?: boolean;
}

type Role = 'broker' | 'bookie' | 'coordinator';

class ProcessNode implements ClusterNode {
  private proc: ChildProcessHandle | undefined;

  constructor(
    readonly role: Role,
    readonly index: number,
    private readonly flags: Record<string, string | number | boolean>,
    private readonly httpPort: number,
    private readonly logFile: string,
    readonly address: string,
    private readonly readyTimeoutMs: number,
    /** Its own uid (brokerUids), which iptables matches on; undefined: the test's. */
    readonly uid?: number,
  ) {}

  get httpUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get running(): boolean {
    return this.proc?.isRunning ?? false;
  }

  /** The last 64 KiB of its output (for a failing test's message). */
  get recentOutput(): string {
    return this.proc?.recentOutput ?? '';
  }

  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  async restart(): Promise<void> {
    if (this.running) throw new Error(`${this.role}-${this.index} is still running`);
    if (this.uid === undefined) {
      this.proc = await spawnRole(this.role, this.flags, { httpPort: this.httpPort, readyTimeoutMs: this.readyTimeoutMs, logFile: this.logFile });
      return;
    }
    // spawnRole has no uid option: the same command line behind setpriv (which execs, so the pid is node's).
    const args = [
      '--reuid', String(this.uid), '--regid', String(this.uid), '--clear-groups', process.execPath, ...SERVER_NODE_FLAGS, strataBin(), this.role,
      ...Object.entries(this.flags).flatMap(([k, v]) => (typeof v === 'boolean' ? [v ? `--${k}` : `--no-${k}`] : [`--${k}`, String(v)])),
    ];
    const proc = ChildProcessHandle.spawn({ command: 'setpriv', args, logFile: this.logFile });
    try {
      await proc.waitForHttp(`${this.httpUrl}/readyz`, this.readyTimeoutMs);
    } catch (err) {
      await proc.kill();
      throw err;
    }
    this.proc = proc;
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  pause(): void {
    this.proc?.pause();
  }

  resume(): void {
    this.proc?.resume();
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }
}

class EtcdMember implements EtcdMemberNode {
  constructor(private readonly etcd: EtcdCluster, readonly index: number) {}

  get running(): boolean {
    return this.etcd.pid(this.index) !== undefined;
  }

  kill(): Promise<void> {
    return this.etcd.kill(this.index);
  }

  restart(): Promise<void> {
    return this.etcd.restart(this.index);
  }
}

/** A real cluster of processes on loopback: etcd members, bookies, brokers, coordinators. */
export class ProcessCluster implements Cluster {
  readonly etcdMembers: EtcdMember[];
  /** The heal function of every cut in place (cutFromEtcd). */
  private readonly cuts = new Set<() => Promise<void>>();

  private constructor(
    private readonly etcd: EtcdCluster,
    private readonly dir: { path: string; remove(): Promise<void> },
    readonly name: string,
    readonly bookies: ProcessNode[],
    readonly brokers: ProcessNode[],
    readonly coordinators: ProcessNode[],
    memberCount: number,
  ) {
    this.etcdMembers = Array.from({ length: memberCount }, (_, i) => new EtcdMember(etcd, i));
  }

  get metadataUrl(): string {
    return this.etcd.url;
  }

  /** Where the process logs are (kept when STRATA_KEEP_TEST_DIRS is set). */
  get logDir(): string {
    return this.dir.path;
  }

  /** Every broker (the SDK tries the next host when one fails), so no client depends on one broker being up. */
  get serviceUrl(): string {
    if (this.brokers.length === 0) throw new Error('no broker');
    return `pulsar://${this.brokers.map((b) => b.address).join(',')}`;
  }

  static async start(options: ProcessClusterOptions = {}): Promise<ProcessCluster> {
    const dir = await tempDir('strata-cluster-');
    const logDir = options.logDir ?? dir.path;
    const members = options.etcdMembers ?? 1;
    const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
    let etcd: EtcdCluster;
    try {
      etcd = await EtcdCluster.start({ members, startTimeoutMs: 60_000 });
    } catch (err) {
      await dir.remove();
      throw err;
    }
    const name = `test-${process.pid}-${Date.now().toString(36)}`;
    const common = { 'metadata-url': etcd.url, cluster: name, 'grpc-host': '127.0.0.1', 'http-host': '127.0.0.1' };
    const make = async (role: Role, index: number, extra: Record<string, string | number | boolean>) => {
      const [grpcPort, httpPort] = await freePorts(2);
      const address = `127.0.0.1:${grpcPort}`;
      const flags: Record<string, string | number | boolean> = { ...common, 'grpc-port': grpcPort!, 'http-port': httpPort!, ...extra };
      if (role !== 'coordinator') flags['advertised-address'] = address;
      if (role === 'bookie') flags['data-dir'] = join(dir.path, `bookie-${index}`);
      const uid = role === 'broker' && options.brokerUids ? brokerUid(index) : undefined;
      return new ProcessNode(role, index, flags, httpPort!, join(logDir, `${role}-${index}.log`), address, readyTimeoutMs, uid);
    };
    if (options.brokerUids) {
      const why = etcdCutUnavailable();
      if (why) throw new Error(`brokerUids: ${why}`);
    }
    const bookies = await Promise.all(Array.from({ length: options.bookies ?? 3 }, (_, i) => make('bookie', i, options.bookieFlags ?? {})));
    const brokers = await Promise.all(Array.from({ length: options.brokers ?? 1 }, (_, i) => make('broker', i, options.brokerFlags ?? {})));
    const coordinators = await Promise.all(Array.from({ length: options.coordinators ?? 1 }, (_, i) => make('coordinator', i, options.coordinatorFlags ?? {})));
    const result = new ProcessCluster(etcd, dir, name, bookies, brokers, coordinators, members);
    try {
      // Bookies register before the broker starts, so that its first ledger finds an ensemble.
      await Promise.all([...coordinators, ...bookies].map((node) => node.restart()));
      for (const node of brokers) await node.restart();
    } catch (err) {
      await result.stop();
      throw err;
    }
    return result;
  }

  /** Why `cutFromEtcd` cannot work in this cluster (needs root, iptables, setpriv and `brokerUids`). */
  cutFromEtcdUnavailable(): string | undefined {
    if (this.brokers.some((b) => b.uid === undefined)) return 'the cluster was started without brokerUids';
    return etcdCutUnavailable();
  }

  /**
   * Drops every packet between the broker and the etcd members' client ports, both ways (decision 0075):
   * in a chain of this test process, the broker's packets to those ports mark their connection, and
   * every packet of a marked connection is dropped. Healing deletes the two rules; connections stalled
   * by the cut carry on (TCP retransmits) or are replaced by the clients.
   */
  async cutFromEtcd(node: ClusterNode): Promise<() => Promise<void>> {
    const broker = this.brokers.find((b) => b === node);
    if (broker?.uid === undefined) throw new Error(`cutFromEtcd: ${node.role}-${node.index} is not a broker with its own uid (brokerUids)`);
    const why = etcdCutUnavailable();
    if (why) throw new Error(`cutFromEtcd: ${why}`);
    const ports = this.etcd.url.replace(/^etcd:\/\//, '').split(',').map((hostPort) => hostPort.split(':').pop()).join(',');
    const mark = `0x${(0x5700 + broker.index).toString(16)}`;
    const rules = [
      ['-p', 'tcp', '-m', 'owner', '--uid-owner', String(broker.uid), '-m', 'multiport', '--dports', ports, '-j', 'CONNMARK', '--set-mark', mark],
      ['-p', 'tcp', '-m', 'connmark', '--mark', mark, '-j', 'DROP'],
    ].map((r) => [...r, '-m', 'comment', '--comment', IPTABLES_TAG]);
    ensureChain();
    for (const rule of rules) iptables('-A', IPTABLES_CHAIN, ...rule);
    const heal = async () => {
      if (!this.cuts.delete(heal)) return;
      for (const rule of rules) iptables('-D', IPTABLES_CHAIN, ...rule);
    };
    this.cuts.add(heal);
    return heal;
  }

  async healCuts(): Promise<void> {
    for (const heal of [...this.cuts]) await heal();
  }

  /** Stops every process by pid (SIGTERM, SIGKILL after a grace period), then etcd, then removes the dir. */
  async stop(): Promise<void> {
    await this.healCuts().catch(() => undefined);
    if (chainReady) removeChain();
    for (const node of [...this.brokers, ...this.bookies, ...this.coordinators]) await node.stop().catch(() => undefined);
    await this.etcd.stop();
    if (!process.env.STRATA_KEEP_TEST_DIRS) await this.dir.remove();
  }
}

/** This test process's iptables chain (and the comment on every rule it adds: deleted by it). */
const IPTABLES_TAG = `strata-test-${process.pid}`;
const IPTABLES_CHAIN = IPTABLES_TAG;

/** A uid no one else uses, per test process and broker index (iptables' owner match tells brokers apart by it). */
function brokerUid(index: number): number {
  return 200_000 + (process.pid % 100_000) * 16 + index;
}

function iptables(...args: string[]): void {
  const r = spawnSync('iptables', ['-w', '5', ...args], { encoding: 'utf8', timeout: 15_000 });
  if (r.status !== 0) throw new Error(`iptables ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
}

let chainReady = false;

/** Creates the chain and jumps to it from OUTPUT (loopback packets all pass OUTPUT); removed at exit. */
function ensureChain(): void {
  if (chainReady) return;
  removeChain();
  iptables('-N', IPTABLES_CHAIN);
  iptables('-I', 'OUTPUT', '-m', 'comment', '--comment', IPTABLES_TAG, '-j', IPTABLES_CHAIN);
  chainReady = true;
  // Even if the test process ends without afterAll (a crash, Ctrl-C), no rule outlives it.
  process.once('exit', removeChain);
}

/** Deletes every OUTPUT rule carrying this process's comment, then the chain; ignores what is not there. */
function removeChain(): void {
  const listed = spawnSync('iptables', ['-w', '5', '-S', 'OUTPUT'], { encoding: 'utf8', timeout: 15_000 });
  for (const line of (listed.stdout ?? '').split('\n')) {
    if (!line.startsWith('-A OUTPUT ') || !line.includes(IPTABLES_TAG)) continue;
    spawnSync('iptables', ['-w', '5', '-D', ...line.slice(3).split(' ')], { timeout: 15_000 });
  }
  spawnSync('iptables', ['-w', '5', '-F', IPTABLES_CHAIN], { timeout: 15_000 });
  spawnSync('iptables', ['-w', '5', '-X', IPTABLES_CHAIN], { timeout: 15_000 });
  chainReady = false;
}

/** iptables rules (`iptables -S` lines) this test process still has in place: none once the cluster stopped. */
export function leftoverIptablesRules(): string[] {
  const listed = spawnSync('iptables', ['-w', '5', '-S'], { encoding: 'utf8', timeout: 15_000 });
  return (listed.stdout ?? '').split('\n').filter((line) => line.includes(IPTABLES_TAG));
}

let cutSupport: string | undefined | null = null;

/**
 * Why a broker cannot be cut off etcd here (undefined when it can): needs root, `setpriv`, and an
 * iptables with the owner, connmark and comment matches and the CONNMARK target; tried once on a
 * scratch chain.
 */
export function etcdCutUnavailable(): string | undefined {
  if (cutSupport !== null) return cutSupport;
  const check = (): string | undefined => {
    if (process.getuid?.() !== 0) return 'not root (iptables and setpriv need it)';
    if (spawnSync('setpriv', ['--version'], { timeout: 5_000 }).status !== 0) return 'no setpriv (util-linux)';
    const chain = `strata-probe-${process.pid}`;
    const run = (...args: string[]) => spawnSync('iptables', ['-w', '5', ...args], { encoding: 'utf8', timeout: 15_000 });
    const created = run('-N', chain);
    if (created.error || created.status !== 0) return `iptables is not usable: ${created.error?.message ?? created.stderr.trim()}`;
    try {
      for (const rule of [
        ['-p', 'tcp', '-m', 'owner', '--uid-owner', '1', '-m', 'multiport', '--dports', '1,2', '-j', 'CONNMARK', '--set-mark', '0x1'],
        ['-p', 'tcp', '-m', 'connmark', '--mark', '0x1', '-m', 'comment', '--comment', 'probe', '-j', 'DROP'],
      ]) {
        const added = run('-A', chain, ...rule);
        if (added.status !== 0) return `iptables lacks a match or target the cut needs: ${added.stderr.trim()}`;
      }
      return undefined;
    } finally {
      run('-F', chain);
      run('-X', chain);
    }
  };
  cutSupport = check();
  return cutSupport;
}
