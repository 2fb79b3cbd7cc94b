import { join } from 'node:path';
import { EtcdCluster } from '@strata/coordinator/testing';
import { ChildProcessHandle, freePorts, spawnRole, tempDir } from '@strata/runtime/testing';
import type { Cluster, ClusterNode } from './cluster.js';

export interface ProcessClusterOptions {
  etcdMembers?: 1 | 3;
  bookies?: number;
  brokers?: number;
  coordinators?: number;
  /** Extra flags for every broker / bookie. */
  brokerFlags?: Record<string, string | number | boolean>;
  bookieFlags?: Record<string, string | number | boolean>;
  /** Keep process logs here (default: the cluster's temp dir). */
  logDir?: string;
}

class ProcessNode implements ClusterNode {
  private proc: ChildProcessHandle | undefined;

  constructor(
    readonly role: 'broker' | 'bookie' | 'coordinator',
    readonly index: number,
    private readonly flags: Record<string, string | number | boolean>,
    private readonly httpPort: number,
    private readonly logFile: string,
    readonly address: string,
  ) {}

  get running(): boolean {
    return this.proc?.isRunning ?? false;
  }

  async restart(): Promise<void> {
    if (this.running) throw new Error(`${this.role}-${this.index} is still running`);
    this.proc = await spawnRole(this.role, this.flags, { httpPort: this.httpPort, logFile: this.logFile });
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

/** A real cluster of processes on loopback: etcd members, bookies, brokers, coordinators. */
export class ProcessCluster implements Cluster {
  private constructor(
    private readonly etcd: EtcdCluster,
    private readonly dir: { path: string; remove(): Promise<void> },
    readonly bookies: ProcessNode[],
    readonly brokers: ProcessNode[],
    readonly coordinators: ProcessNode[],
  ) {}

  get metadataUrl(): string {
    return this.etcd.url;
  }

  get serviceUrl(): string {
    const broker = this.brokers.find((b) => b.running) ?? this.brokers[0];
    if (!broker) throw new Error('no broker');
    return `pulsar://${broker.address}`;
  }

  static async start(options: ProcessClusterOptions = {}): Promise<ProcessCluster> {
    const dir = await tempDir('strata-cluster-');
    const logDir = options.logDir ?? dir.path;
    const etcd = await EtcdCluster.start({ members: options.etcdMembers ?? 1 });
    const cluster = `test-${process.pid}-${Date.now().toString(36)}`;
    const common = { 'metadata-url': etcd.url, cluster, 'grpc-host': '127.0.0.1', 'http-host': '127.0.0.1' };
    const make = async (role: 'broker' | 'bookie' | 'coordinator', index: number, extra: Record<string, string | number | boolean>) => {
      const [grpcPort, httpPort] = await freePorts(2);
      const address = `127.0.0.1:${grpcPort}`;
      const flags: Record<string, string | number | boolean> = { ...common, 'grpc-port': grpcPort!, 'http-port': httpPort!, ...extra };
      if (role !== 'coordinator') flags['advertised-address'] = address;
      if (role === 'bookie') flags['data-dir'] = join(dir.path, `bookie-${index}`);
      return new ProcessNode(role, index, flags, httpPort!, join(logDir, `${role}-${index}.log`), address);
    };
    const bookies = await Promise.all(Array.from({ length: options.bookies ?? 3 }, (_, i) => make('bookie', i, options.bookieFlags ?? {})));
    const brokers = await Promise.all(Array.from({ length: options.brokers ?? 1 }, (_, i) => make('broker', i, options.brokerFlags ?? {})));
    const coordinators = await Promise.all(Array.from({ length: options.coordinators ?? 1 }, (_, i) => make('coordinator', i, {})));
    const result = new ProcessCluster(etcd, dir, bookies, brokers, coordinators);
    try {
      for (const node of [...coordinators, ...bookies]) await node.restart();
      for (const node of brokers) await node.restart();
    } catch (err) {
      await result.stop();
      throw err;
    }
    return result;
  }

  async stop(): Promise<void> {
    for (const node of [...this.brokers, ...this.bookies, ...this.coordinators]) await node.stop().catch(() => undefined);
    await this.etcd.stop();
    if (!process.env.STRATA_KEEP_TEST_DIRS) await this.dir.remove();
  }
}
