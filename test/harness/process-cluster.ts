import { join } from 'node:path';
import { EtcdCluster } from '@strata/coordinator/testing';
import { ChildProcessHandle, freePorts, spawnRole, tempDir } from '@strata/runtime/testing';
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
    this.proc = await spawnRole(this.role, this.flags, { httpPort: this.httpPort, readyTimeoutMs: this.readyTimeoutMs, logFile: this.logFile });
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

  get serviceUrl(): string {
    const broker = this.brokers.find((b) => b.running) ?? this.brokers[0];
    if (!broker) throw new Error('no broker');
    return `pulsar://${broker.address}`;
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
      return new ProcessNode(role, index, flags, httpPort!, join(logDir, `${role}-${index}.log`), address, readyTimeoutMs);
    };
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

  /** Stops every process by pid (SIGTERM, SIGKILL after a grace period), then etcd, then removes the dir. */
  async stop(): Promise<void> {
    for (const node of [...this.brokers, ...this.bookies, ...this.coordinators]) await node.stop().catch(() => undefined);
    await this.etcd.stop();
    if (!process.env.STRATA_KEEP_TEST_DIRS) await this.dir.remove();
  }
}
