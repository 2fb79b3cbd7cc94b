/**
 * `strata admin`: a thin, promise-based door to the broker's Admin gRPC service (protos/strata/broker/v1/
 * admin.proto), plus the human renderings of its answers. Every call has a deadline; errors come back as
 * the SDK's ClientError (the broker's domain code kept), translated in the SDK's one place.
 */
import * as grpc from '@grpc/grpc-js';
import { ClientError, fromGrpcError } from '../errors.js';
import { createBrokerClients } from '../protocol.js';
import type { AdminClient } from '../generated/strata/broker/v1/Admin.js';
import type { BrokerClient } from '../generated/strata/broker/v1/Broker.js';
import type { BrokerInfo__Output } from '../generated/strata/broker/v1/BrokerInfo.js';
import type { BundleInfo__Output } from '../generated/strata/broker/v1/BundleInfo.js';
import type { NamespacePolicies, NamespacePolicies__Output } from '../generated/strata/broker/v1/NamespacePolicies.js';
import type { TopicStats__Output } from '../generated/strata/broker/v1/TopicStats.js';
import { UsageError } from './errors.js';
import { formatKeyValues, formatTable } from './table.js';

export type { BrokerInfo__Output as BrokerInfo, BundleInfo__Output as BundleInfo, NamespacePolicies__Output as Policies, TopicStats__Output as TopicStats };

export const ADMIN_CALL_TIMEOUT_MS = 10_000;

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** One broker's two stubs, sharing its channel. */
interface BrokerStubs {
  readonly target: string;
  readonly admin: AdminClient;
  readonly broker: BrokerClient;
}

/**
 * The Admin service of a cluster (any broker answers for the whole cluster). With several targets
 * (`pulsar://a,b,c`), a call that could not reach a broker at all (no connection established: the
 * request never left) is tried on the next one; an answer from a broker, even an error, is final.
 */
export class AdminApi {
  readonly #targets: readonly string[];
  readonly #stubs: Array<BrokerStubs | undefined>;
  /** The target that answered last: later calls start there. */
  #current = 0;

  constructor(targets: string | readonly string[], private readonly timeoutMs = ADMIN_CALL_TIMEOUT_MS) {
    this.#targets = typeof targets === 'string' ? [targets] : [...targets];
    if (this.#targets.length === 0) throw new RangeError('AdminApi needs at least one target');
    this.#stubs = this.#targets.map(() => undefined);
  }

  #stubsAt(i: number): BrokerStubs {
    const target = this.#targets[i] as string;
    return (this.#stubs[i] ??= { target, ...createBrokerClients(target) });
  }

  private async call<Req, Res>(pick: (s: BrokerStubs) => grpc.Client, method: string, req: Req): Promise<Res> {
    const unreachable: string[] = [];
    for (let n = 0; n < this.#targets.length; n++) {
      const i = (this.#current + n) % this.#targets.length;
      const stubs = this.#stubsAt(i);
      try {
        const res = await this.#callOne<Req, Res>(pick(stubs), stubs.target, method, req);
        this.#current = i;
        return res;
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        unreachable.push(`${stubs.target}${err.sys ? ` (${err.sys})` : ''}`);
      }
    }
    throw new ClientError('UNAVAILABLE', `cannot reach a broker at ${unreachable.join(', ')}`);
  }

  #callOne<Req, Res>(client: grpc.Client, target: string, method: string, req: Req): Promise<Res> {
    const fn = (client as unknown as Record<string, Unary<Req, Res>>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`admin method ${method} is missing`));
    return new Promise<Res>((resolve, reject) => {
      fn.call(client, req, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (!err) return resolve(res as Res);
        // The transport's own text ("No connection established. Last error: ...") says little to a user;
        // and such a call never reached a broker, so another one may take it.
        if (err.code === grpc.status.UNAVAILABLE && !err.metadata?.get('strata-error-code')?.length && /No connection established/i.test(err.details ?? '')) {
          reject(new Unreachable(/\b(E[A-Z]{4,})\b/.exec(err.details ?? '')?.[1]));
        } else if (err.code === grpc.status.UNAVAILABLE && !err.metadata?.get('strata-error-code')?.length) {
          reject(new ClientError('UNAVAILABLE', `lost the connection to the broker at ${target}`, { cause: err }));
        } else {
          reject(fromGrpcError(err));
        }
      });
    });
  }

  private a<Req, Res>(method: string, req: Req): Promise<Res> {
    return this.call((s) => s.admin as unknown as grpc.Client, method, req);
  }

  async listTenants(): Promise<string[]> {
    return (await this.a<object, { names: string[] }>('listTenants', {})).names;
  }
  async createTenant(tenant: string, adminRoles: string[] = [], allowedClusters: string[] = []): Promise<void> {
    await this.a('createTenant', { tenant, adminRoles, allowedClusters });
  }
  async deleteTenant(tenant: string): Promise<void> {
    await this.a('deleteTenant', { tenant });
  }
  async listNamespaces(tenant: string): Promise<string[]> {
    return (await this.a<object, { names: string[] }>('listNamespaces', { tenant })).names;
  }
  async createNamespace(namespace: string, bundles = 0): Promise<void> {
    await this.a('createNamespace', { namespace, bundles });
  }
  async deleteNamespace(namespace: string): Promise<void> {
    await this.a('deleteNamespace', { namespace });
  }
  async getPolicies(namespace: string): Promise<NamespacePolicies__Output> {
    return this.a('getNamespacePolicies', { namespace });
  }
  async setPolicies(namespace: string, policies: NamespacePolicies): Promise<void> {
    await this.a('setNamespacePolicies', { namespace, policies });
  }
  async listTopics(namespace: string): Promise<string[]> {
    return (await this.a<object, { names: string[] }>('listTopics', { namespace })).names;
  }
  async listPartitionedTopics(namespace: string): Promise<string[]> {
    return (await this.a<object, { names: string[] }>('listPartitionedTopics', { namespace })).names;
  }
  async createPartitionedTopic(topic: string, partitions: number): Promise<void> {
    await this.a('createPartitionedTopic', { topic, partitions });
  }
  async deletePartitionedTopic(topic: string, force: boolean): Promise<void> {
    await this.a('deletePartitionedTopic', { topic, force });
  }
  async deleteTopic(topic: string, force: boolean): Promise<void> {
    await this.a('deleteTopic', { topic, force });
  }
  async topicStats(topic: string): Promise<TopicStats__Output> {
    return this.a('getTopicStats', { topic });
  }
  async listBrokers(): Promise<BrokerInfo__Output[]> {
    return (await this.a<object, { brokers: BrokerInfo__Output[] }>('listBrokers', {})).brokers;
  }
  async listBundles(namespace: string): Promise<BundleInfo__Output[]> {
    return (await this.a<object, { bundles: BundleInfo__Output[] }>('listBundles', { namespace })).bundles;
  }
  async unloadBundle(namespace: string, range: string, destinationBrokerId = ''): Promise<void> {
    await this.a('unloadBundle', { namespace, range, destinationBrokerId });
  }
  async splitBundle(namespace: string, range: string): Promise<void> {
    await this.a('splitBundle', { namespace, range });
  }
  async lookupBundle(topic: string): Promise<BundleInfo__Output> {
    return this.a('lookupBundle', { topic });
  }
  /** Partitions of a topic (0 for a non-partitioned one), from the client-facing service. */
  async partitions(topic: string): Promise<number> {
    return (await this.call<object, { partitions: number }>((s) => s.broker as unknown as grpc.Client, 'getPartitionedTopicMetadata', { topic })).partitions;
  }

  close(): void {
    for (const s of this.#stubs) s?.broker.close();
  }
}

/** A call that never reached a broker (`sys`: the socket error, e.g. ECONNREFUSED). */
class Unreachable extends Error {
  constructor(readonly sys: string | undefined) {
    super('no connection established');
  }
}

/** `a,b` or repeated flags to a list. */
export function listOf(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

// ---------------------------------------------------------------------------------------------------
// Policies: `set` changes only the fields given.

export interface PolicyFlags {
  deduplication?: string;
  retentionTimeMinutes?: string;
  retentionSizeMb?: string;
  messageTtlSeconds?: string;
  ensembleSize?: string;
  writeQuorum?: string;
  ackQuorum?: string;
}

function intFlag(flag: string, v: string, min: number): number {
  if (!/^-?\d+$/.test(v.trim())) throw new UsageError(`${flag} must be an integer, got '${v}'`);
  const n = Number(v);
  if (n < min) throw new UsageError(`${flag} must be >= ${min}, got ${n}`);
  return n;
}

/** Applies the given flags over the current policies; throws UsageError when no flag is given or one is bad. */
export function mergePolicies(current: NamespacePolicies__Output, flags: PolicyFlags): NamespacePolicies__Output {
  const next = { ...current };
  let changed = false;
  if (flags.deduplication !== undefined) {
    const v = flags.deduplication.toLowerCase();
    if (v !== 'true' && v !== 'false') throw new UsageError(`--deduplication must be true or false, got '${flags.deduplication}'`);
    next.deduplicationEnabled = v === 'true';
    changed = true;
  }
  const ints: [keyof PolicyFlags, keyof NamespacePolicies__Output, string, number][] = [
    ['retentionTimeMinutes', 'retentionTimeMinutes', '--retention-time-minutes', -1],
    ['retentionSizeMb', 'retentionSizeMb', '--retention-size-mb', -1],
    ['messageTtlSeconds', 'messageTtlSeconds', '--message-ttl-seconds', 0],
    ['ensembleSize', 'ensembleSize', '--ensemble-size', 1],
    ['writeQuorum', 'writeQuorum', '--write-quorum', 1],
    ['ackQuorum', 'ackQuorum', '--ack-quorum', 1],
  ];
  for (const [flag, field, name, min] of ints) {
    const v = flags[flag];
    if (v === undefined) continue;
    (next as Record<string, unknown>)[field] = intFlag(name, v, min);
    changed = true;
  }
  if (!changed) throw new UsageError('give at least one policy to set (e.g. --retention-time-minutes 60)');
  if (next.ensembleSize > 0 && (next.writeQuorum > next.ensembleSize || next.ackQuorum > next.writeQuorum)) {
    throw new UsageError(`need ensemble >= write quorum >= ack quorum, got ${next.ensembleSize}/${next.writeQuorum}/${next.ackQuorum}`);
  }
  return next;
}

// ---------------------------------------------------------------------------------------------------
// Human renderings

export function renderNames(names: readonly string[], header: string): string {
  return formatTable([header], [...names].sort().map((n) => [n]));
}

export function renderPolicies(p: NamespacePolicies__Output): string {
  return formatKeyValues([
    ['deduplication', p.deduplicationEnabled],
    ['retention time (min)', p.retentionTimeMinutes === -1 ? 'infinite' : p.retentionTimeMinutes],
    ['retention size (MB)', p.retentionSizeMb === -1 ? 'infinite' : p.retentionSizeMb],
    ['message TTL (s)', p.messageTtlSeconds === 0 ? 'none' : p.messageTtlSeconds],
    ['bundles', p.bundles],
    ['ensemble / write / ack', `${p.ensembleSize} / ${p.writeQuorum} / ${p.ackQuorum}`],
  ]);
}

export function renderTopicStats(s: TopicStats__Output): string {
  const parts = [
    formatKeyValues([
      ['topic', s.topic],
      ['owner broker', s.ownerBroker],
      ['msg rate in', s.msgRateIn],
      ['msg throughput in (B/s)', s.msgThroughputIn],
      ['msg rate out', s.msgRateOut],
      ['msg throughput out (B/s)', s.msgThroughputOut],
      ['storage size (B)', s.storageSize],
      ['backlog size', s.backlogSize],
      ['ledgers', s.ledgerCount],
      ['entries added', s.entriesAdded],
    ]),
  ];
  if (s.publishers.length > 0) {
    parts.push('', formatTable(['producer', 'rate in', 'throughput in', 'address'],
      s.publishers.map((p) => [p.producerName, p.msgRateIn, p.msgThroughputIn, p.address])));
  }
  if (s.subscriptions.length > 0) {
    parts.push('', formatTable(['subscription', 'type', 'backlog', 'rate out', 'unacked', 'consumers', 'mark-delete'],
      s.subscriptions.map((sub) => [
        sub.name, sub.type, sub.msgBacklog, sub.msgRateOut, sub.unackedMessages, sub.consumers.length,
        sub.markDeletePosition ? `${sub.markDeletePosition.ledgerId}:${sub.markDeletePosition.entryId}` : '',
      ])));
  }
  return parts.join('\n');
}

export function renderBrokers(brokers: readonly BrokerInfo__Output[]): string {
  return formatTable(['broker', 'url', 'bundles', 'cpu %', 'msg rate in', 'msg rate out'],
    brokers.map((b) => [b.brokerId, b.url, b.bundleCount, b.cpuPercent, b.msgRateIn, b.msgRateOut]));
}

export function renderBundles(bundles: readonly BundleInfo__Output[]): string {
  return formatTable(['namespace', 'range', 'owner', 'owner url'],
    bundles.map((b) => [b.namespace, b.range, b.ownerBrokerId || '(unowned)', b.ownerUrl]));
}

export interface PartitionLookup {
  topic: string;
  range: string;
  owner: string;
  url: string;
}

export function renderLookups(rows: readonly PartitionLookup[]): string {
  return formatTable(['topic', 'bundle', 'owner', 'url'], rows.map((r) => [r.topic, r.range, r.owner || '(unowned)', r.url]));
}
