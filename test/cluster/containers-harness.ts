/**
 * A Strata cluster of containers (testcontainers) from the locally built images (scripts/build-image.sh):
 * etcd members, bookies, brokers and coordinators on one user-defined Docker network, each reachable
 * in the network by a stable alias (etcd-0, bookie-1, broker-0, coordinator-0) and by its role's name
 * (broker: every running broker, as the Kubernetes Service would answer). Brokers and bookies
 * advertise their alias, so clients run inside the network: `cluster.cli(...)` runs the strata CLI in a
 * toolbox container there, and deploy/k8s/drills/drill.sh --platform docker runs the failover drills
 * against the same network (DOCKER_NETWORK = cluster.networkName).
 *
 * Containers carry the labels `strata.role=<role>` and `strata.cluster=<id>` (the drills find brokers
 * and bookies by role; leftovers are found by cluster). Set TESTCONTAINERS_RYUK_DISABLED=true (Ryuk's
 * image cannot be pulled here); stop() removes everything this harness started.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import type { Cluster, ClusterNode, EtcdMemberNode } from '../harness/cluster.js';

// Ryuk (testcontainers' reaper) is an image that cannot be pulled here; stop() cleans up instead.
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

export const STRATA_IMAGE = process.env.STRATA_IMAGE ?? 'strata:dev';
export const ETCD_IMAGE = process.env.STRATA_ETCD_IMAGE ?? 'strata-etcd:dev';

/** Ports inside the network (DESIGN.md defaults). */
export const PORTS = {
  etcdClient: 2379,
  etcdPeer: 2380,
  broker: { grpc: 6650, http: 8080 },
  bookie: { grpc: 3181, http: 8000 },
  coordinator: { grpc: 6660, http: 8090 },
} as const;

const ROLE_STARTUP_MS = 60_000;

export interface ContainerClusterOptions {
  etcdMembers?: number;
  bookies?: number;
  brokers?: number;
  coordinators?: number;
  /** Cluster name (metadata prefix); default a unique one. */
  cluster?: string;
  /** Extra STRATA_* variables per role, e.g. { broker: { STRATA_SESSION_TTL_MS: '4000' } }. */
  env?: Partial<Record<'broker' | 'bookie' | 'coordinator', Record<string, string>>>;
}

export interface EtcdCluster {
  readonly members: StartedTestContainer[];
  /** `etcd://etcd-0:2379,...`, as the roles inside the network see it. */
  readonly metadataUrl: string;
}

export interface ContainerCluster extends EtcdCluster {
  readonly id: string;
  readonly cluster: string;
  readonly network: StartedNetwork;
  readonly networkName: string;
  readonly bookies: StartedTestContainer[];
  readonly brokers: StartedTestContainer[];
  readonly coordinators: StartedTestContainer[];
  /** `pulsar://broker:6650` (every running broker, like the Kubernetes Service), for clients inside the network. */
  readonly serviceUrl: string;
  /** Runs `strata ARGS...` in the toolbox container, inside the network. */
  cli(args: string[], options?: { timeoutMs?: number }): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** A data directory on the host that uid 10001 in a container can write; removed by the owner's stop(). */
export function hostDir(id: string, name: string, dataDirs: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), `${id}-${name}-`));
  chmodSync(dir, 0o777);
  dataDirs.push(dir);
  return dir;
}

/** Removes whatever container of cluster `id` is left (one that failed to stop, or a drill's toolbox). */
function removeLabelled(id: string): void {
  const ids = spawnSync('docker', ['ps', '-aq', '--filter', `label=strata.cluster=${id}`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  if (ids.length) spawnSync('docker', ['rm', '-f', ...ids]);
}

const labels = (id: string, role: string) => ({ 'strata.role': role, 'strata.cluster': id });

/** Starts etcd members together (a member is ready only once a quorum runs) with --pre-vote. */
export async function startEtcdCluster(network: StartedNetwork, id: string, members: number, dataDirs: string[]): Promise<EtcdCluster> {
  const names = Array.from({ length: members }, (_, i) => `etcd-${i}`);
  const initialCluster = names.map((n) => `${n}=http://${n}:${PORTS.etcdPeer}`).join(',');
  const results = await Promise.allSettled(
    names.map((name) =>
      new GenericContainer(ETCD_IMAGE)
        .withName(`${id}-${name}`)
        .withNetwork(network)
        .withNetworkAliases(name)
        .withLabels(labels(id, 'etcd'))
        // On the host, so that a killed member restarts with its data and rejoins.
        .withBindMounts([{ source: hostDir(id, name, dataDirs), target: '/var/lib/etcd', mode: 'rw' }])
        .withCommand([
          `--name=${name}`,
          '--data-dir=/var/lib/etcd/data',
          `--listen-client-urls=http://0.0.0.0:${PORTS.etcdClient}`,
          `--advertise-client-urls=http://${name}:${PORTS.etcdClient}`,
          `--listen-peer-urls=http://0.0.0.0:${PORTS.etcdPeer}`,
          `--initial-advertise-peer-urls=http://${name}:${PORTS.etcdPeer}`,
          `--initial-cluster=${initialCluster}`,
          '--initial-cluster-state=new',
          `--initial-cluster-token=${id}`,
          '--pre-vote',
        ])
        .withWaitStrategy(Wait.forLogMessage(/ready to serve client requests/))
        .withStartupTimeout(30_000)
        .start(),
    ),
  );
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.map((c) => c.stop({ timeout: 1_000, remove: true })));
    throw failed.reason;
  }
  return { members: started, metadataUrl: `etcd://${names.map((n) => `${n}:${PORTS.etcdClient}`).join(',')}` };
}

/** `etcdctl endpoint health` of every member, run inside a member; true when all are healthy. */
export async function etcdHealthy(etcd: EtcdCluster, from: StartedTestContainer): Promise<boolean> {
  const endpoints = etcd.metadataUrl.replace('etcd://', '').split(',').map((e) => `http://${e}`).join(',');
  const out = await from.exec(['/usr/local/bin/etcdctl', `--endpoints=${endpoints}`, '--command-timeout=2s', 'endpoint', 'health'], {
    env: { ETCDCTL_API: '3' },
  });
  return out.exitCode === 0;
}

function roleContainer(id: string, network: StartedNetwork, role: 'broker' | 'bookie' | 'coordinator', name: string, env: Record<string, string>) {
  const ports = PORTS[role];
  return new GenericContainer(STRATA_IMAGE)
    .withName(`${id}-${name}`)
    .withNetwork(network)
    // The role's name as a shared alias stands in for the Kubernetes Service: Docker's DNS answers it
    // with every running container of the role (a stopped one drops out).
    .withNetworkAliases(name, role)
    .withLabels(labels(id, role))
    .withCommand([role])
    // Environment, not flags: a variable a role's spec lacks is ignored, a flag would be refused.
    .withEnvironment({ STRATA_GRPC_PORT: String(ports.grpc), STRATA_HTTP_PORT: String(ports.http), STRATA_GRPC_HOST: '0.0.0.0', STRATA_HTTP_HOST: '0.0.0.0', ...env })
    .withExposedPorts(ports.http)
    .withWaitStrategy(Wait.forHttp('/readyz', ports.http).forStatusCode(200))
    .withStartupTimeout(ROLE_STARTUP_MS);
}

/**
 * Starts the whole cluster: etcd, then coordinators, bookies and brokers (each waits for /readyz),
 * then the toolbox. On a failure everything already started is removed before the error is thrown.
 */
export async function startContainerCluster(options: ContainerClusterOptions = {}): Promise<ContainerCluster> {
  const id = `strata-${randomUUID().slice(0, 8)}`;
  const cluster = options.cluster ?? id;
  const network = await new Network().start();
  const started: StartedTestContainer[] = [];
  const dataDirs: string[] = [];
  const stop = async () => {
    await Promise.allSettled(started.map((c) => c.stop({ timeout: 1_000, remove: true })));
    removeLabelled(id);
    await network.stop().catch(() => undefined);
    for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
  };
  try {
    const etcd = await startEtcdCluster(network, id, options.etcdMembers ?? 3, dataDirs);
    started.push(...etcd.members);
    const common = { STRATA_METADATA_URL: etcd.metadataUrl, STRATA_CLUSTER: cluster };

    const coordinators: StartedTestContainer[] = [];
    for (let i = 0; i < (options.coordinators ?? 1); i++) {
      const c = await roleContainer(id, network, 'coordinator', `coordinator-${i}`, { ...common, ...options.env?.coordinator }).start();
      started.push(c);
      coordinators.push(c);
    }
    const bookies = await Promise.all(
      Array.from({ length: options.bookies ?? 3 }, async (_, i) => {
        const name = `bookie-${i}`;
        // On the host, so that a killed and restarted bookie finds its ledgers again.
        const dir = hostDir(id, name, dataDirs);
        const c = await roleContainer(id, network, 'bookie', name, {
          ...common, STRATA_ADVERTISED_ADDRESS: `${name}:${PORTS.bookie.grpc}`, STRATA_DATA_DIR: '/data/bookie', ...options.env?.bookie,
        }).withBindMounts([{ source: dir, target: '/data', mode: 'rw' }]).start();
        started.push(c);
        return c;
      }),
    );
    const brokers = await Promise.all(
      Array.from({ length: options.brokers ?? 2 }, async (_, i) => {
        const name = `broker-${i}`;
        const c = await roleContainer(id, network, 'broker', name, {
          ...common, STRATA_ADVERTISED_ADDRESS: `${name}:${PORTS.broker.grpc}`, ...options.env?.broker,
        }).start();
        started.push(c);
        return c;
      }),
    );
    const toolbox = await new GenericContainer(STRATA_IMAGE)
      .withName(`${id}-toolbox`)
      .withNetwork(network)
      .withLabels(labels(id, 'drill'))
      .withEntrypoint(['/usr/bin/node'])
      .withCommand(['-e', 'setInterval(() => {}, 1 << 30)'])
      .start();
    started.push(toolbox);
    const serviceUrl = `pulsar://broker:${PORTS.broker.grpc}`;
    return {
      id,
      cluster,
      network,
      networkName: network.getName(),
      members: etcd.members,
      metadataUrl: etcd.metadataUrl,
      bookies,
      brokers,
      coordinators,
      serviceUrl,
      async cli(args, { timeoutMs = 60_000 } = {}) {
        // docker exec through the CLI: testcontainers' exec has no timeout of its own.
        const out = spawnSync('docker', ['exec', toolbox.getId(), '/usr/bin/node', '/app/packages/cli/dist/bin.js', ...args], {
          encoding: 'utf8',
          timeout: timeoutMs,
        });
        return { exitCode: out.status ?? -1, stdout: out.stdout ?? '', stderr: out.stderr ?? '' };
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// The same cluster behind the scenario harness interface (test/harness/cluster.ts), so that the
// robustness scenarios written for processes run unchanged on containers. Every container gets a
// fixed IP on a network with its own subnet; roles advertise ip:port, which the host (Linux bridge)
// and the other containers reach alike.

class FixedIpContainer extends GenericContainer {
  /** Joins `network` at `ip` with `aliases` (set at creation, so the address survives restarts). */
  withFixedIp(network: string, ip: string, aliases: string[]): this {
    this.withNetworkMode(network);
    this.createOpts.NetworkingConfig = { EndpointsConfig: { [network]: { IPAMConfig: { IPv4Address: ip }, Aliases: aliases } } };
    return this;
  }
}

const docker = (...args: string[]) => spawnSync('docker', args, { encoding: 'utf8', timeout: 120_000 });

async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${url} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** One container of the cluster, driven by docker (kill = SIGKILL, pause = cgroup freeze). */
export class ContainerNode implements ClusterNode {
  running = true;
  constructor(
    readonly role: 'broker' | 'bookie' | 'coordinator',
    readonly index: number,
    readonly address: string,
    readonly httpUrl: string,
    readonly container: StartedTestContainer,
    private readonly readyTimeoutMs: number,
  ) {}

  async kill(): Promise<void> {
    docker('kill', this.container.getId());
    this.running = false;
  }

  /** The last 2000 lines of its output (docker logs), for the checks of a fault. */
  get recentOutput(): string {
    const out = spawnSync('docker', ['logs', '--tail', '2000', this.container.getId()], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
    return `${out.stdout ?? ''}${out.stderr ?? ''}`;
  }

  pause(): void {
    docker('pause', this.container.getId());
  }

  resume(): void {
    // Unpausing a container that is not paused fails harmlessly.
    docker('unpause', this.container.getId());
  }

  async restart(): Promise<void> {
    const out = docker('start', this.container.getId());
    if (out.status !== 0) throw new Error(`docker start ${this.role}-${this.index}: ${out.stderr}`);
    this.running = true;
    await waitReady(`${this.httpUrl}/readyz`, this.readyTimeoutMs);
  }

  async stop(): Promise<void> {
    docker('stop', '-t', '60', this.container.getId());
    this.running = false;
  }
}

class ContainerEtcdMember implements EtcdMemberNode {
  running = true;
  constructor(
    readonly index: number,
    readonly container: StartedTestContainer,
    private readonly clientUrl: string,
  ) {}

  async kill(): Promise<void> {
    docker('kill', this.container.getId());
    this.running = false;
  }

  async restart(): Promise<void> {
    const out = docker('start', this.container.getId());
    if (out.status !== 0) throw new Error(`docker start etcd-${this.index}: ${out.stderr}`);
    this.running = true;
    await waitReady(`${this.clientUrl}/health`, 30_000);
  }
}

export interface ContainerScenarioClusterOptions {
  etcdMembers?: number;
  bookies?: number;
  brokers?: number;
  coordinators?: number;
  /** STRATA_* variables per role. */
  env?: Partial<Record<'broker' | 'bookie' | 'coordinator', Record<string, string>>>;
  readyTimeoutMs?: number;
}

/**
 * Writes `docker logs` of every container to `<tmpdir>/<cluster id>-logs/<container name>.log` (kept
 * for a look after the run; the harness removes the containers on stop).
 */
function keepLogs(id: string, containers: StartedTestContainer[]): void {
  const dir = join(tmpdir(), `${id}-logs`);
  mkdirSync(dir, { recursive: true });
  for (const c of containers) {
    const out = spawnSync('docker', ['logs', '-t', c.getId()], { encoding: 'utf8', timeout: 60_000, maxBuffer: 512 * 1024 * 1024 });
    writeFileSync(join(dir, `${c.getName().replace(/^\//, '')}.log`), `${out.stdout ?? ''}${out.stderr ?? ''}`);
  }
  console.log(`container logs kept in ${dir}`);
}

/**
 * Why ContainerScenarioCluster.cutFromEtcd cannot work on this host, or undefined. It drops packets with
 * the host's iptables (DOCKER-USER chain), which sees traffic between containers on one bridge only when
 * br_netfilter passes bridged packets to iptables (net.bridge.bridge-nf-call-iptables = 1); needs root.
 */
export function containerCutUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (iptables)';
  if (spawnSync('iptables', ['-L', 'DOCKER-USER', '-n'], { timeout: 10_000 }).status !== 0) return 'no iptables DOCKER-USER chain';
  try {
    if (readFileSync('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').trim() !== '1') return 'net.bridge.bridge-nf-call-iptables is not 1';
  } catch {
    return 'br_netfilter not loaded (no /proc/sys/net/bridge/bridge-nf-call-iptables)';
  }
  return undefined;
}

/**
 * Removes cut rules (cutFromEtcd) that a run which died before its stop() left for addresses of
 * `subnet`: the subnet was free, so no running cluster owns them, and they would cut the new one.
 */
function dropStaleCuts(subnet: string): void {
  const listed = spawnSync('iptables', ['-S', 'DOCKER-USER'], { encoding: 'utf8', timeout: 10_000 });
  if (listed.status !== 0) return;
  for (const line of listed.stdout.split('\n')) {
    if (!line.startsWith('-A DOCKER-USER ') || !line.includes('strata-cut-') || !line.includes(` ${subnet}.`)) continue;
    const args = line.slice('-A DOCKER-USER '.length).match(/"[^"]*"|\S+/g)?.map((a) => a.replace(/^"|"$/g, '')) ?? [];
    spawnSync('iptables', ['-D', 'DOCKER-USER', ...args], { timeout: 10_000 });
  }
}

/** A container cluster that implements the scenario harness's Cluster. */
export class ContainerScenarioCluster implements Cluster {
  private constructor(
    readonly name: string,
    readonly serviceUrl: string,
    readonly metadataUrl: string,
    readonly brokers: ContainerNode[],
    readonly bookies: ContainerNode[],
    readonly coordinators: ContainerNode[],
    readonly etcdMembers: ContainerEtcdMember[],
    private readonly etcdIps: string[],
    private readonly cleanup: () => Promise<void>,
  ) {}

  /** iptables rules in place for cuts (each an argument list after -I/-D DOCKER-USER). */
  private readonly cuts = new Set<string[]>();

  static async start(options: ContainerScenarioClusterOptions = {}): Promise<ContainerScenarioCluster> {
    const id = `strata-${randomUUID().slice(0, 8)}`;
    const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
    // A /24 of our own, outside Docker's default address pools (172.17-31.0.0/16, 192.168.0.0/16),
    // which networks created without a subnet (testcontainers' Network) take whole /16s of; retried
    // when it overlaps a network that exists.
    let subnet = '';
    for (let attempt = 0; attempt < 20 && !subnet; attempt++) {
      const candidate = `10.234.${Math.floor(Math.random() * 256)}`;
      if (docker('network', 'create', '--subnet', `${candidate}.0/24`, '--label', `strata.cluster=${id}`, id).status === 0) subnet = candidate;
    }
    if (!subnet) throw new Error('could not create a docker network with a free 10.234.x.0/24 subnet');
    dropStaleCuts(subnet);
    let nextHost = 10;
    const ipOf = () => `${subnet}.${nextHost++}`;
    const containers: StartedTestContainer[] = [];
    const dataDirs: string[] = [];
    const cleanup = async () => {
      if (process.env.STRATA_KEEP_TEST_DIRS) keepLogs(id, containers);
      await Promise.allSettled(containers.map((c) => c.stop({ timeout: 1_000, remove: true })));
      removeLabelled(id);
      docker('network', 'rm', id);
      for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    };
    try {
      const etcdCount = options.etcdMembers ?? 3;
      const etcdIps = Array.from({ length: etcdCount }, ipOf);
      const initialCluster = etcdIps.map((ip, i) => `etcd-${i}=http://${ip}:${PORTS.etcdPeer}`).join(',');
      const etcdContainers = await Promise.all(
        etcdIps.map((ip, i) =>
          new FixedIpContainer(ETCD_IMAGE)
            .withName(`${id}-etcd-${i}`)
            .withFixedIp(id, ip, [`etcd-${i}`])
            .withLabels(labels(id, 'etcd'))
            .withBindMounts([{ source: hostDir(id, `etcd-${i}`, dataDirs), target: '/var/lib/etcd', mode: 'rw' }])
            .withCommand([
              `--name=etcd-${i}`, '--data-dir=/var/lib/etcd/data',
              `--listen-client-urls=http://0.0.0.0:${PORTS.etcdClient}`, `--advertise-client-urls=http://${ip}:${PORTS.etcdClient}`,
              `--listen-peer-urls=http://0.0.0.0:${PORTS.etcdPeer}`, `--initial-advertise-peer-urls=http://${ip}:${PORTS.etcdPeer}`,
              `--initial-cluster=${initialCluster}`, '--initial-cluster-state=new', `--initial-cluster-token=${id}`, '--pre-vote',
            ])
            .withWaitStrategy(Wait.forLogMessage(/ready to serve client requests/))
            .withStartupTimeout(30_000)
            .start()
            .then((c) => (containers.push(c), c)),
        ),
      );
      const metadataUrl = `etcd://${etcdIps.map((ip) => `${ip}:${PORTS.etcdClient}`).join(',')}`;
      const etcdMembers = etcdContainers.map((c, i) => new ContainerEtcdMember(i, c, `http://${etcdIps[i]}:${PORTS.etcdClient}`));

      const startRole = async (role: 'broker' | 'bookie' | 'coordinator', index: number): Promise<ContainerNode> => {
        const ip = ipOf();
        const ports = PORTS[role];
        let container = new FixedIpContainer(STRATA_IMAGE)
          .withName(`${id}-${role}-${index}`)
          .withFixedIp(id, ip, [`${role}-${index}`, role])
          .withLabels(labels(id, role))
          .withCommand([role])
          .withEnvironment({
            STRATA_METADATA_URL: metadataUrl, STRATA_CLUSTER: id, STRATA_GRPC_HOST: '0.0.0.0', STRATA_HTTP_HOST: '0.0.0.0',
            STRATA_GRPC_PORT: String(ports.grpc), STRATA_HTTP_PORT: String(ports.http), STRATA_ADVERTISED_ADDRESS: `${ip}:${ports.grpc}`,
            ...(role === 'bookie' ? { STRATA_DATA_DIR: '/data/bookie' } : {}),
            ...options.env?.[role],
          });
        if (role === 'bookie') container = container.withBindMounts([{ source: hostDir(id, `${role}-${index}`, dataDirs), target: '/data', mode: 'rw' }]);
        const started = await container.start();
        containers.push(started);
        const node = new ContainerNode(role, index, `${ip}:${ports.grpc}`, `http://${ip}:${ports.http}`, started, readyTimeoutMs);
        await waitReady(`${node.httpUrl}/readyz`, readyTimeoutMs);
        return node;
      };
      const coordinators: ContainerNode[] = [];
      for (let i = 0; i < (options.coordinators ?? 1); i++) coordinators.push(await startRole('coordinator', i));
      const bookies = await Promise.all(Array.from({ length: options.bookies ?? 3 }, (_, i) => startRole('bookie', i)));
      const brokers = await Promise.all(Array.from({ length: options.brokers ?? 1 }, (_, i) => startRole('broker', i)));
      return new ContainerScenarioCluster(id, `pulsar://${brokers.map((b) => b.address).join(',')}`, metadataUrl, brokers, bookies, coordinators, etcdMembers, etcdIps, cleanup);
    } catch (err) {
      await cleanup();
      throw err;
    }
  }

  /** Cuts a node off the cluster's network: it reaches nothing and nothing reaches it. */
  disconnect(node: ContainerNode): void {
    const out = docker('network', 'disconnect', '--force', this.name, node.container.getId());
    if (out.status !== 0) throw new Error(`network disconnect ${node.role}-${node.index}: ${out.stderr}`);
  }

  /** Plugs a disconnected node back in, at its address and with its aliases. */
  reconnect(node: ContainerNode): void {
    const ip = node.address.split(':')[0]!;
    const out = docker('network', 'connect', '--ip', ip, '--alias', `${node.role}-${node.index}`, '--alias', node.role, this.name, node.container.getId());
    if (out.status !== 0) throw new Error(`network connect ${node.role}-${node.index}: ${out.stderr}`);
  }

  cutFromEtcdUnavailable(): string | undefined {
    return containerCutUnavailable();
  }

  /**
   * Cuts `node` off every etcd member's client port, both directions, with DROP rules (connections hang
   * as on a real partition; the node keeps its clients and bookies). Resolves with the heal function.
   */
  async cutFromEtcd(node: ClusterNode): Promise<() => Promise<void>> {
    const why = this.cutFromEtcdUnavailable();
    if (why) throw new Error(`cannot cut a node off etcd here: ${why}`);
    const ip = node.address.split(':')[0]!;
    const comment = ['-m', 'comment', '--comment', `strata-cut-${this.name}`];
    const rules = this.etcdIps.flatMap((etcd) => [
      ['-s', ip, '-d', etcd, '-p', 'tcp', '--dport', String(PORTS.etcdClient), ...comment, '-j', 'DROP'],
      ['-s', etcd, '-d', ip, '-p', 'tcp', '--sport', String(PORTS.etcdClient), ...comment, '-j', 'DROP'],
    ]);
    for (const rule of rules) {
      const out = spawnSync('iptables', ['-I', 'DOCKER-USER', ...rule], { encoding: 'utf8', timeout: 10_000 });
      if (out.status !== 0) {
        this.dropRules();
        throw new Error(`iptables -I DOCKER-USER ${rule.join(' ')}: ${out.stderr}`);
      }
      this.cuts.add(rule);
    }
    return async () => {
      for (const rule of rules) this.dropRule(rule);
    };
  }

  async healCuts(): Promise<void> {
    this.dropRules();
  }

  private dropRule(rule: string[]): void {
    if (!this.cuts.delete(rule)) return;
    spawnSync('iptables', ['-D', 'DOCKER-USER', ...rule], { timeout: 10_000 });
  }

  private dropRules(): void {
    for (const rule of [...this.cuts]) this.dropRule(rule);
  }

  async stop(): Promise<void> {
    this.dropRules();
    await this.cleanup();
  }
}
