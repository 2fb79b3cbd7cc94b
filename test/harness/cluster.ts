/**
 * The cluster a scenario runs against (STYLE.md 13): written once, run by the process harness here and,
 * later, by a testcontainers harness. Nodes are addressed by role and index; faults are real signals.
 */
export interface ClusterNode {
  readonly role: 'broker' | 'bookie' | 'coordinator';
  readonly index: number;
  /** host:port of its gRPC server. */
  readonly address: string;
  /** http://host:port of its /metrics, /healthz and /readyz. */
  readonly httpUrl: string;
  readonly running: boolean;
  /** kill -9 */
  kill(): Promise<void>;
  /** SIGSTOP, as a long GC pause. */
  pause(): void;
  resume(): void;
  /** Starts it again on the same ports and data. */
  restart(): Promise<void>;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** The last part of its output, where the harness keeps it (evidence for a fault's checks). */
  readonly recentOutput?: string;
}

/** One etcd member: its loss (kill -9) and return are faults too. */
export interface EtcdMemberNode {
  readonly index: number;
  readonly running: boolean;
  /** kill -9 */
  kill(): Promise<void>;
  /** Starts it again on the same data dir and ports; resolves when it is healthy. */
  restart(): Promise<void>;
}

export interface Cluster {
  /** pulsar://host:port of a broker. */
  readonly serviceUrl: string;
  readonly metadataUrl: string;
  readonly brokers: readonly ClusterNode[];
  readonly bookies: readonly ClusterNode[];
  readonly coordinators: readonly ClusterNode[];
  readonly etcdMembers: readonly EtcdMemberNode[];
  stop(): Promise<void>;
  /**
   * Optional fault: cuts `node` off every etcd member's client port, both directions (packets dropped,
   * connections hang as on a real partition), until the returned function is called. Cuts still in
   * place are healed by `healCuts` and by `stop`. Absent where the harness cannot cut.
   */
  cutFromEtcd?(node: ClusterNode): Promise<() => Promise<void>>;
  /** Heals every cut still in place (a scenario that failed half-way). */
  healCuts?(): Promise<void>;
  /** Why `cutFromEtcd` cannot work here (printed by a skipped scenario); undefined when it can. */
  cutFromEtcdUnavailable?(): string | undefined;
}
