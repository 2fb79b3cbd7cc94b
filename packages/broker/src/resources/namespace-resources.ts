import { namespaceBundles, type MetadataStore, type Watcher } from '@strata/coordinator';
import { type Logger } from '@strata/runtime';
import { AlreadyExistsError, ConsumerBusyError, InvalidRequestError, NotFoundError } from '../errors.js';
import { checkTenantName, DEFAULT_NAMESPACE, DEFAULT_TENANT, parseNamespace, TopicName } from '../names.js';
import { MAX_BUNDLES } from '../ownership/bundles.js';
import { MAX_RATE } from '../policies/rate-limiter.js';

/**
 * Tenants, namespaces (with their policies) and partitioned topics, kept in the metadata store:
 *   admin/tenants/<tenant>                                   TenantInfo JSON
 *   admin/policies/<tenant>/<namespace>                      NamespacePolicies JSON
 *   admin/partitioned-topics/<tenant>/<ns>/<domain>/<topic>  { partitions }
 * Values are JSON so operators can read them with etcdctl.
 */
export interface TenantInfo {
  adminRoles: string[];
  allowedClusters: string[];
}

export interface NamespacePolicies {
  deduplicationEnabled: boolean;
  /** -1 infinite, 0 none. */
  retentionTimeMinutes: number;
  retentionSizeMb: number;
  /** 0: no TTL. */
  messageTtlSeconds: number;
  bundles: number;
  /**
   * Split bundles (decision 0061): n+1 strictly rising hash boundaries from 0 to 0xffffffff; when set
   * they win over `bundles` (kept equal to n). Written by the admin SplitBundle.
   */
  bundleBoundaries?: number[];
  /** Ledger quorums for the namespace's topics; 0 = the broker's configured default. */
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  /** Publish rate limit of each topic of the namespace (Pulsar's publishRate); absent or 0: none. */
  publishRateMsgsPerSecond?: number;
  publishRateBytesPerSecond?: number;
  /** Dispatch rate limit of each subscription of the namespace's topics (Pulsar's subscriptionDispatchRate). */
  subscriptionDispatchRateMsgsPerSecond?: number;
  subscriptionDispatchRateBytesPerSecond?: number;
  /** Resource limits (Pulsar's names); absent or 0: none. */
  maxProducersPerTopic?: number;
  maxConsumersPerSubscription?: number;
  maxSubscriptionsPerTopic?: number;
  /** Delayed delivery (Pulsar's delayed_delivery_policies): absent = on; false: deliverAt is ignored. */
  delayedDeliveryEnabled?: boolean;
  /** The longest deliverAt/deliverAfter a producer may ask (ms ahead); a longer one is refused. 0: any. */
  maxDeliveryDelayMs?: number;
}

export const MAX_PARTITIONS = 10_000;
/** The per-topic resource limits a namespace may set (0: none). */
export const RESOURCE_LIMITS = ['maxProducersPerTopic', 'maxConsumersPerSubscription', 'maxSubscriptionsPerTopic'] as const;
const LIST_PAGE = 1000;
/** Upper bound on names returned by one list (admin lists are for humans and tools, not bulk export). */
const LIST_MAX = 100_000;

export class NamespaceResources {
  private readonly logger: Logger;

  constructor(
    private readonly store: MetadataStore,
    private readonly defaults: { policies: NamespacePolicies; cluster: string },
    logger: Logger,
  ) {
    this.logger = logger.child({ component: 'namespace-resources' });
  }

  /** Creates tenant `public` and namespace `public/default` unless they exist (idempotent, race-safe). */
  async ensureDefaults(): Promise<void> {
    await this.createIfAbsent(`admin/tenants/${DEFAULT_TENANT}`, { adminRoles: [], allowedClusters: [this.defaults.cluster] });
    await this.createIfAbsent(`admin/policies/${DEFAULT_TENANT}/${DEFAULT_NAMESPACE}`, this.defaults.policies);
  }

  async listTenants(): Promise<string[]> {
    return this.listChildren('admin/tenants/');
  }

  async createTenant(tenant: string, info: TenantInfo): Promise<void> {
    checkTenantName(tenant);
    if (!(await this.createIfAbsent(`admin/tenants/${tenant}`, info))) throw new AlreadyExistsError(`tenant ${tenant}`);
  }

  async deleteTenant(tenant: string): Promise<void> {
    checkTenantName(tenant);
    if ((await this.listNamespaces(tenant)).length > 0) throw new ConsumerBusyError(`tenant ${tenant} still has namespaces`);
    if (!(await this.store.delete(`admin/tenants/${tenant}`))) throw new NotFoundError(`tenant ${tenant}`);
  }

  /** The tenant's info; NOT_FOUND when it does not exist. */
  async getTenant(tenant: string): Promise<TenantInfo> {
    checkTenantName(tenant);
    const kv = await this.store.get(`admin/tenants/${tenant}`);
    if (!kv) throw new NotFoundError(`tenant ${tenant}`);
    const info = JSON.parse(kv.value.toString('utf8')) as Partial<TenantInfo>;
    return { adminRoles: info.adminRoles ?? [], allowedClusters: info.allowedClusters ?? [] };
  }

  /** Replaces an existing tenant's info (compare-and-swap on the version read); NOT_FOUND when absent. */
  async updateTenant(tenant: string, info: TenantInfo): Promise<void> {
    checkTenantName(tenant);
    const kv = await this.store.get(`admin/tenants/${tenant}`);
    if (!kv) throw new NotFoundError(`tenant ${tenant}`);
    await this.store.put(`admin/tenants/${tenant}`, JSON.stringify(info), { expectedVersion: kv.version });
  }

  async tenantExists(tenant: string): Promise<boolean> {
    return (await this.store.get(`admin/tenants/${tenant}`)) !== undefined;
  }

  async listNamespaces(tenant: string): Promise<string[]> {
    checkTenantName(tenant);
    return (await this.listChildren(`admin/policies/${tenant}/`)).map((ns) => `${tenant}/${ns}`);
  }

  async createNamespace(name: string, policies: Partial<NamespacePolicies>): Promise<void> {
    const ns = parseNamespace(name);
    if (!(await this.tenantExists(ns.tenant))) throw new NotFoundError(`tenant ${ns.tenant}`);
    const full = this.validatePolicies({ ...this.defaults.policies, ...policies });
    if (!(await this.createIfAbsent(`admin/policies/${ns.name}`, full))) throw new AlreadyExistsError(`namespace ${ns.name}`);
  }

  async deleteNamespace(name: string, hasTopics: boolean): Promise<void> {
    const ns = parseNamespace(name);
    if (hasTopics || (await this.listPartitionedTopics(ns.name)).length > 0) {
      throw new ConsumerBusyError(`namespace ${ns.name} still has topics`);
    }
    if (!(await this.store.delete(`admin/policies/${ns.name}`))) throw new NotFoundError(`namespace ${ns.name}`);
  }

  /** The namespace's policies; NOT_FOUND when the namespace does not exist. */
  async getPolicies(name: string): Promise<NamespacePolicies> {
    const ns = parseNamespace(name);
    const kv = await this.store.get(`admin/policies/${ns.name}`);
    if (!kv) throw new NotFoundError(`namespace ${ns.name}`);
    return { ...this.defaults.policies, ...(JSON.parse(kv.value.toString('utf8')) as Partial<NamespacePolicies>) };
  }

  /**
   * Calls `onChange` with a namespace's policies each time they are written (by any broker), so a
   * policy change reaches every broker's loaded topics within a moment, with no restart.
   */
  watchPolicies(onChange: (namespace: string, policies: NamespacePolicies) => void): Promise<Watcher> {
    const prefix = 'admin/policies/';
    return this.store.watch(prefix, {
      onEvent: (e) => {
        if (e.type !== 'put') return;
        try {
          onChange(e.key.slice(prefix.length), { ...this.defaults.policies, ...(JSON.parse(e.value.toString('utf8')) as Partial<NamespacePolicies>) });
        } catch (err) {
          this.logger.warn({ err, key: e.key }, 'unreadable namespace policies; ignored');
        }
      },
      onError: (err) => this.logger.error({ err }, 'the namespace policies watch ended; policy changes apply where they were made until a restart'),
    });
  }

  async setPolicies(name: string, policies: NamespacePolicies): Promise<void> {
    const ns = parseNamespace(name);
    const kv = await this.store.get(`admin/policies/${ns.name}`);
    if (!kv) throw new NotFoundError(`namespace ${ns.name}`);
    const full = this.validatePolicies(policies);
    await this.store.put(`admin/policies/${ns.name}`, JSON.stringify(full), { expectedVersion: kv.version });
  }

  /** 0 when `topic` is not a partitioned topic. */
  async getPartitions(topic: TopicName): Promise<number> {
    if (topic.isPartition) return 0;
    const kv = await this.store.get(`admin/partitioned-topics/${topic.path}`);
    if (!kv) return 0;
    return (JSON.parse(kv.value.toString('utf8')) as { partitions: number }).partitions;
  }

  async createPartitionedTopic(topic: TopicName, partitions: number): Promise<void> {
    if (topic.isPartition) throw new InvalidRequestError(`${topic} is a partition name`);
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
      throw new InvalidRequestError(`partitions must be 1..${MAX_PARTITIONS}, got ${partitions}`);
    }
    await this.getPolicies(topic.namespaceName);
    if (!(await this.createIfAbsent(`admin/partitioned-topics/${topic.path}`, { partitions }))) {
      throw new AlreadyExistsError(`partitioned topic ${topic}`);
    }
  }

  /**
   * Raises a partitioned topic's partition count (Pulsar's update: partitions are only ever added, since
   * a removed partition's messages would be orphaned). NOT_FOUND when it is not partitioned.
   */
  async updatePartitionedTopic(topic: TopicName, partitions: number): Promise<void> {
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
      throw new InvalidRequestError(`partitions must be 1..${MAX_PARTITIONS}, got ${partitions}`);
    }
    const kv = topic.isPartition ? undefined : await this.store.get(`admin/partitioned-topics/${topic.path}`);
    if (!kv) throw new NotFoundError(`partitioned topic ${topic}`);
    const current = (JSON.parse(kv.value.toString('utf8')) as { partitions: number }).partitions;
    if (partitions <= current) throw new InvalidRequestError(`${topic} has ${current} partitions: the count can only grow, got ${partitions}`);
    await this.store.put(`admin/partitioned-topics/${topic.path}`, JSON.stringify({ partitions }), { expectedVersion: kv.version });
  }

  async deletePartitionedTopic(topic: TopicName): Promise<number> {
    const partitions = await this.getPartitions(topic);
    if (partitions === 0) throw new NotFoundError(`partitioned topic ${topic}`);
    await this.store.delete(`admin/partitioned-topics/${topic.path}`);
    return partitions;
  }

  async listPartitionedTopics(namespace: string): Promise<string[]> {
    const ns = parseNamespace(namespace);
    const out: string[] = [];
    for (const domain of ['persistent', 'non-persistent']) {
      for (const local of await this.listChildren(`admin/partitioned-topics/${ns.name}/${domain}/`)) {
        out.push(`${domain}://${ns.name}/${local}`);
      }
    }
    return out;
  }

  private validatePolicies(p: NamespacePolicies): NamespacePolicies {
    const intIn = (v: unknown, min: number, max: number, what: string) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InvalidRequestError(`${what} must be ${min}..${max}, got ${String(v)}`);
    };
    intIn(p.bundles, 1, MAX_BUNDLES, 'bundles');
    intIn(p.ensembleSize, 0, 32, 'ensembleSize');
    intIn(p.writeQuorum, 0, 32, 'writeQuorum');
    intIn(p.ackQuorum, 0, 32, 'ackQuorum');
    const set = [p.ensembleSize, p.writeQuorum, p.ackQuorum].filter((n) => n > 0).length;
    if (set !== 0 && set !== 3) throw new InvalidRequestError('set all of ensembleSize, writeQuorum, ackQuorum, or none (0 = broker default)');
    if (set === 3 && !(p.ackQuorum <= p.writeQuorum && p.writeQuorum <= p.ensembleSize)) {
      throw new InvalidRequestError(`need ackQuorum <= writeQuorum <= ensembleSize, got ${p.ackQuorum}/${p.writeQuorum}/${p.ensembleSize}`);
    }
    intIn(p.retentionTimeMinutes, -1, Number.MAX_SAFE_INTEGER, 'retentionTimeMinutes');
    intIn(p.retentionSizeMb, -1, Number.MAX_SAFE_INTEGER, 'retentionSizeMb');
    intIn(p.messageTtlSeconds, 0, 0xffffffff, 'messageTtlSeconds');
    intIn(p.publishRateMsgsPerSecond ?? 0, 0, MAX_RATE, 'publishRateMsgsPerSecond');
    intIn(p.publishRateBytesPerSecond ?? 0, 0, MAX_RATE, 'publishRateBytesPerSecond');
    intIn(p.subscriptionDispatchRateMsgsPerSecond ?? 0, 0, MAX_RATE, 'subscriptionDispatchRateMsgsPerSecond');
    intIn(p.subscriptionDispatchRateBytesPerSecond ?? 0, 0, MAX_RATE, 'subscriptionDispatchRateBytesPerSecond');
    for (const k of RESOURCE_LIMITS) intIn(p[k] ?? 0, 0, 1_000_000, k);
    intIn(p.maxDeliveryDelayMs ?? 0, 0, Number.MAX_SAFE_INTEGER, 'maxDeliveryDelayMs');
    const out: NamespacePolicies = {
      deduplicationEnabled: Boolean(p.deduplicationEnabled), retentionTimeMinutes: p.retentionTimeMinutes,
      retentionSizeMb: p.retentionSizeMb, messageTtlSeconds: p.messageTtlSeconds, bundles: p.bundles,
      ensembleSize: p.ensembleSize, writeQuorum: p.writeQuorum, ackQuorum: p.ackQuorum,
      ...(p.publishRateMsgsPerSecond ? { publishRateMsgsPerSecond: p.publishRateMsgsPerSecond } : {}),
      ...(p.publishRateBytesPerSecond ? { publishRateBytesPerSecond: p.publishRateBytesPerSecond } : {}),
      ...(p.subscriptionDispatchRateMsgsPerSecond ? { subscriptionDispatchRateMsgsPerSecond: p.subscriptionDispatchRateMsgsPerSecond } : {}),
      ...(p.subscriptionDispatchRateBytesPerSecond ? { subscriptionDispatchRateBytesPerSecond: p.subscriptionDispatchRateBytesPerSecond } : {}),
      ...Object.fromEntries(RESOURCE_LIMITS.filter((k) => p[k]).map((k) => [k, p[k]])),
      ...(p.delayedDeliveryEnabled === false ? { delayedDeliveryEnabled: false } : {}),
      ...(p.maxDeliveryDelayMs ? { maxDeliveryDelayMs: p.maxDeliveryDelayMs } : {}),
    };
    if (p.bundleBoundaries !== undefined) {
      // Throws a typed INVALID_ARGUMENT for malformed boundaries; brokers and the coordinator derive bundles from them.
      out.bundleBoundaries = [...p.bundleBoundaries];
      out.bundles = namespaceBundles('policy', out).length;
    }
    return out;
  }

  /** Returns false when the key already existed. */
  private async createIfAbsent(key: string, value: unknown): Promise<boolean> {
    try {
      await this.store.put(key, JSON.stringify(value), { expectedVersion: 0 });
      this.logger.info({ key }, 'created');
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === 'BAD_VERSION') return false;
      throw err;
    }
  }

  /**
   * Brokers with a live session (`brokers/<id>` -> { url, httpUrl, load }): httpUrl '' when not
   * published; `cpuPercent` and message rates from the broker's last load report (0 before one).
   */
  async listBrokers(): Promise<Array<{ brokerId: string; url: string; httpUrl: string; cpuPercent: number; msgRateIn: number; msgRateOut: number }>> {
    const page = await this.store.list('brokers/', { limit: LIST_PAGE });
    return page.items.map((kv) => {
      let reg: { url?: unknown; httpUrl?: unknown; load?: { cpuPercent?: unknown; msgRateIn?: unknown; msgRateOut?: unknown } } = {};
      try {
        reg = JSON.parse(kv.value.toString('utf8')) as typeof reg;
      } catch {
        // an unreadable registration still names a broker
      }
      const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
      return {
        brokerId: kv.key.slice('brokers/'.length), url: String(reg.url ?? ''), httpUrl: String(reg.httpUrl ?? ''),
        cpuPercent: num(reg.load?.cpuPercent), msgRateIn: num(reg.load?.msgRateIn), msgRateOut: num(reg.load?.msgRateOut),
      };
    });
  }

  /**
   * Bundles owned per broker id, counted from the ownership keys (`ownership/<bundle>` -> { brokerId }),
   * which are exact now (a load report's bundleCount is up to one report interval old).
   */
  async countOwnedBundles(): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    let startAfter: string | undefined;
    let seen = 0;
    for (;;) {
      const page = await this.store.list('ownership/', { limit: LIST_PAGE, startAfter });
      for (const item of page.items) {
        let brokerId = '';
        try {
          brokerId = String((JSON.parse(item.value.toString('utf8')) as { brokerId?: unknown }).brokerId ?? '');
        } catch {
          // an unreadable record counts for nobody
        }
        if (brokerId) counts.set(brokerId, (counts.get(brokerId) ?? 0) + 1);
      }
      seen += page.items.length;
      if (!page.more || page.items.length === 0 || seen >= LIST_MAX) break;
      startAfter = page.items[page.items.length - 1]?.key;
    }
    return counts;
  }

  /** Direct children names under a prefix (the first path segment after it). */
  private async listChildren(prefix: string): Promise<string[]> {
    const names = new Set<string>();
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.store.list(prefix, { limit: LIST_PAGE, startAfter });
      for (const item of page.items) {
        const child = item.key.slice(prefix.length).split('/')[0];
        if (child) names.add(child);
      }
      if (!page.more || page.items.length === 0 || names.size >= LIST_MAX) break;
      startAfter = page.items[page.items.length - 1]?.key;
    }
    return [...names].sort();
  }
}
