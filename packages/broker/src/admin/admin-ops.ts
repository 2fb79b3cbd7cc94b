import { bundleForHash, namespaceBundles, splitBundlePolicy, type BundleSpec } from '@strata/coordinator';
import { AlreadyExistsError, InvalidRequestError, NotFoundError, UnimplementedError } from '../errors.js';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import { parseNamespace, topicHash, TopicName } from '../names.js';
import type { OwnershipManager } from '../ownership/index.js';
import type { NamespacePolicies, TenantInfo } from '../resources/namespace-resources.js';
import type { BrokerService } from '../topics/broker-service.js';
import { PersistentTopic } from '../topics/topic.js';

/**
 * The broker's admin operations, once: the gRPC Admin service (admin-handlers.ts) and the REST admin
 * API v2 (rest-*.ts) are two faces over these functions, each translating its own requests and errors.
 * Errors are the broker's typed ones (errors.ts); a face never re-checks what an operation checks.
 */
export interface AdminOpsContext {
  service: BrokerService;
  /** Bundle ownership (owners, unloads, HTTP addresses); without it every bundle is this broker's. */
  ownership?: OwnershipManager;
}

export interface BrokerEntry {
  brokerId: string;
  /** host:port of the client port (gRPC and Pulsar protocol). */
  url: string;
  /** host:port of the HTTP port ('' when the broker has not published one). */
  httpUrl: string;
  /** Bundles it owns (from the ownership keys, exact) and its CPU % (its last load report). */
  bundleCount: number;
  cpuPercent: number;
  msgRateIn: number;
  msgRateOut: number;
}

export type AdminOps = ReturnType<typeof adminOps>;

/** Where a new subscription's cursor starts (the storage room's InitialPosition). */
export type SubscriptionStart = 'earliest' | 'latest';

export function adminOps(ctx: AdminOpsContext) {
  const { service } = ctx;
  const resources = service.resources;
  // Read at call time: the broker learns its address when it binds.
  const me = () => service.ownership.self;

  const loadedBundleCount = async (topics: string[]): Promise<number> => {
    const ids = new Set<string>();
    for (const key of topics) {
      const name = TopicName.parse(key);
      const bundle = bundleForHash(namespaceBundles(name.namespaceName, await resources.getPolicies(name.namespaceName)), topicHash(name));
      if (bundle) ids.add(bundle.id);
    }
    return ids.size;
  };

  const listTopics = async (namespace: string): Promise<string[]> => {
    const ns = parseNamespace(namespace);
    await resources.getPolicies(ns.name);
    const persistent = (await service.factory.list(`${ns.name}/persistent/`)).map((path) => {
      const local = path.slice(`${ns.name}/persistent/`.length);
      return `persistent://${ns.name}/${local}`;
    });
    const loaded = service.loadedTopicNames().filter((t) => t.startsWith(`non-persistent://${ns.name}/`));
    return [...new Set([...persistent, ...loaded])].sort();
  };

  /** Whether a non-partitioned topic of that name holds data (persistent) or is live (non-persistent). */
  const topicExists = async (name: TopicName): Promise<boolean> => {
    if (await service.loadedTopic(name)) return true;
    return name.isPersistent && (await service.factory.exists(name.path));
  };

  const oneTopicStats = async (name: TopicName): Promise<TopicStats> => {
    const topic = await service.getTopic(name, { create: false });
    return topic.stats(me().url);
  };

  const persistentTopic = async (name: TopicName): Promise<PersistentTopic> => {
    const topic = await service.getTopic(name, { create: false });
    if (!(topic instanceof PersistentTopic)) throw new InvalidRequestError(`${name} is not persistent: it has no durable subscriptions`);
    return topic;
  };

  /** A bundle of the namespace by its range (`0x00000000_0x40000000`, as Pulsar names bundles); NOT_FOUND otherwise. */
  const findBundle = async (namespace: string, range: string): Promise<BundleSpec> => {
    const ns = parseNamespace(namespace).name;
    const p = await resources.getPolicies(ns);
    const found = namespaceBundles(ns, { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries }).find((b) => b.id.slice(ns.length + 1) === range);
    if (!found) throw new NotFoundError(`bundle ${range} of ${ns} (ListBundles shows the current ranges)`);
    return found;
  };

  const updatePolicies = async (namespace: string, change: (current: NamespacePolicies) => NamespacePolicies): Promise<NamespacePolicies> => {
    const ns = parseNamespace(namespace).name;
    const next = change(await resources.getPolicies(ns));
    await resources.setPolicies(ns, next);
    await service.applyPolicies(ns, next);
    return next;
  };

  return {
    listTenants: () => resources.listTenants(),
    getTenant: (tenant: string) => resources.getTenant(tenant),
    createTenant: (tenant: string, info: TenantInfo) => resources.createTenant(tenant, info),
    updateTenant: (tenant: string, info: TenantInfo) => resources.updateTenant(tenant, info),
    deleteTenant: (tenant: string) => resources.deleteTenant(tenant),

    listNamespaces: async (tenant: string): Promise<string[]> => {
      if (!(await resources.tenantExists(tenant))) throw new NotFoundError(`tenant ${tenant}`);
      return resources.listNamespaces(tenant);
    },
    createNamespace: (namespace: string, policies: Partial<NamespacePolicies>) => resources.createNamespace(namespace, policies),
    /** Refused (CONSUMER_BUSY) while the namespace holds topics or partitioned topics. */
    deleteNamespace: async (namespace: string): Promise<void> => {
      const topics = await listTopics(namespace);
      await resources.deleteNamespace(namespace, topics.length > 0);
    },
    getPolicies: (namespace: string) => resources.getPolicies(namespace),
    /** Read, change, write (compare-and-swap) and push to the loaded topics of the namespace. */
    updatePolicies,

    listTopics,
    listPartitionedTopics: (namespace: string) => resources.listPartitionedTopics(namespace),
    /** 0 for a topic that is not partitioned (Pulsar's metadata answer for a plain topic). */
    partitions: (name: TopicName) => service.partitions(name),

    /**
     * A partitioned topic over a name that already is a non-partitioned topic would hide that topic's
     * data (its name then resolves to partitions): refused with ALREADY_EXISTS, as Pulsar does.
     * The check and the create are two steps; a producer creating the plain topic in between wins
     * the race and its topic is hidden, which Pulsar's own two-step check shares.
     */
    createPartitionedTopic: async (name: TopicName, partitions: number): Promise<void> => {
      if (!name.isPartition && (await topicExists(name))) throw new AlreadyExistsError(`topic ${name} (a non-partitioned topic)`);
      await resources.createPartitionedTopic(name, partitions);
    },
    updatePartitionedTopic: (name: TopicName, partitions: number) => resources.updatePartitionedTopic(name, partitions),
    deletePartitionedTopic: async (name: TopicName, force: boolean): Promise<void> => {
      const partitions = await resources.getPartitions(name);
      if (partitions === 0) throw new NotFoundError(`partitioned topic ${name}`);
      for (let i = 0; i < partitions; i++) {
        try {
          await service.deleteTopic(name.partition(i), force);
        } catch (err) {
          if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
        }
      }
      await resources.deletePartitionedTopic(name);
    },

    /**
     * Creates a non-partitioned topic (REST PUT on a topic) by loading it with creation allowed, on the
     * broker that owns its bundle (NOT_OWNER elsewhere). ALREADY_EXISTS when it exists or is partitioned.
     */
    createTopic: async (name: TopicName): Promise<void> => {
      if ((await resources.getPartitions(name)) > 0) throw new AlreadyExistsError(`partitioned topic ${name}`);
      if (await topicExists(name)) throw new AlreadyExistsError(`topic ${name}`);
      await service.getTopic(name, { create: 'explicit' });
    },
    deleteTopic: (name: TopicName, force: boolean) => service.deleteTopic(name, force),
    /** One topic's stats; for a partitioned topic the sum over its partitions (subscriptions listed per partition). */
    topicStats: async (name: TopicName): Promise<TopicStats> => {
      const partitions = await resources.getPartitions(name);
      if (partitions === 0) return oneTopicStats(name);
      const all = await Promise.all(Array.from({ length: partitions }, (_, i) => oneTopicStats(name.partition(i))));
      return sumStats(name, all, me().url);
    },
    /** A loaded (or loadable) topic's stats and last stored position, for the REST internalStats. */
    topicInternals: async (name: TopicName): Promise<{ stats: TopicStats; lastMessageId: { ledgerId: number; entryId: number } }> => {
      const topic = await service.getTopic(name, { create: false });
      const last = topic.lastMessageId();
      return { stats: topic.stats(me().url), lastMessageId: { ledgerId: Number(last.ledgerId), entryId: Number(last.entryId) } };
    },
    /** Closes the loaded topic (clients reconnect and it loads again); the bundle stays owned. */
    unloadTopic: async (name: TopicName): Promise<void> => {
      await service.getTopic(name, { create: false });
      await service.unloadTopics((t) => t.equals(name), { reason: 'topic unloaded by admin' });
    },

    /** Unloads every bundle of the namespace: the owners obey and the coordinator assigns them again (decision 0062). */
    unloadNamespace: async (namespace: string): Promise<void> => {
      if (!ctx.ownership) throw new UnimplementedError('namespace unload without bundle ownership');
      const ns = parseNamespace(namespace).name;
      const p = await resources.getPolicies(ns);
      for (const b of namespaceBundles(ns, { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries })) await ctx.ownership.requestUnload(b.id);
    },

    /** Subscription operations of a persistent topic, loaded on this broker (its owner). */
    createSubscription: async (name: TopicName, subscription: string, initialPosition: SubscriptionStart) =>
      (await persistentTopic(name)).createSubscription(subscription, initialPosition),
    deleteSubscription: async (name: TopicName, subscription: string, force: boolean) =>
      (await persistentTopic(name)).deleteSubscription(subscription, force),
    resetSubscription: async (name: TopicName, subscription: string, target: { timestampMs: number } | 'latest') =>
      (await persistentTopic(name)).resetSubscription(subscription, target),
    expireSubscription: async (name: TopicName, subscription: string, olderThanMs: number) =>
      (await persistentTopic(name)).expireSubscription(subscription, olderThanMs),
    skipSubscription: async (name: TopicName, subscription: string, entries: number) =>
      (await persistentTopic(name)).skipSubscription(subscription, entries),

    /** Unloads one bundle, to `destinationBrokerId` or the least loaded other broker. */
    unloadBundle: async (namespace: string, range: string, destinationBrokerId?: string): Promise<void> => {
      if (!ctx.ownership) throw new UnimplementedError('UnloadBundle without bundle ownership');
      const bundle = await findBundle(namespace, range);
      // Any broker can take the request: it writes the assignment, and the owner obeys it (decision 0062).
      await ctx.ownership.requestUnload(bundle.id, destinationBrokerId);
    },
    /** Splits a bundle in the middle of its range. */
    splitBundle: async (namespace: string, range: string): Promise<void> => {
      const bundle = await findBundle(namespace, range);
      const current = await resources.getPolicies(bundle.namespace);
      // The same split as the coordinator's automatic one (decision 0068): the middle of the range.
      const next = splitBundlePolicy(bundle.namespace, current, bundle.start);
      if (!next) throw new InvalidRequestError(`bundle ${bundle.id} cannot be split further`);
      // One CAS write of the policy (decision 0061): the owner unloads the old range, the coordinator assigns the halves.
      await resources.setPolicies(bundle.namespace, next);
    },

    /** Who owns the topic's bundle (with its HTTP address), undefined while nobody does. */
    ownerOf: async (name: TopicName): Promise<(Pick<BrokerEntry, 'brokerId' | 'url' | 'httpUrl'> & { isMine: boolean }) | undefined> => {
      await resources.getPolicies(name.namespaceName);
      const owner = await service.ownership.ownerOf(name);
      if (!owner) return undefined;
      const httpUrl = owner.isMine
        ? (ctx.ownership?.httpUrl ?? '')
        : ((await resources.listBrokers()).find((b) => b.brokerId === owner.brokerId)?.httpUrl ?? '');
      return { brokerId: owner.brokerId, url: owner.url, httpUrl, isMine: owner.isMine };
    },
    /**
     * Every broker with a live session (brokers/<id>): CPU and rates from its last load report, bundle
     * counts from the ownership keys; this broker adds its own rates and CPU measured now.
     */
    listBrokers: async (): Promise<BrokerEntry[]> => {
      let inRate = 0;
      let outRate = 0;
      const loaded = service.loadedTopicNames();
      for (const key of loaded) {
        const s = (await service.loadedTopic(TopicName.parse(key)))?.stats(me().url);
        inRate += Number(s?.msgRateIn ?? 0);
        outRate += Number(s?.msgRateOut ?? 0);
      }
      const registered = await resources.listBrokers();
      const myHttp = ctx.ownership?.httpUrl ?? '';
      const mine = registered.find((b) => b.brokerId === me().brokerId);
      if (!mine) registered.push({ brokerId: me().brokerId, url: me().url, httpUrl: myHttp, cpuPercent: 0, msgRateIn: 0, msgRateOut: 0 });
      // Without bundle ownership (one broker) every bundle with a loaded topic is this broker's.
      const counts = ctx.ownership ? await resources.countOwnedBundles() : new Map([[me().brokerId, await loadedBundleCount(loaded)]]);
      const myCpu = ctx.ownership?.cpuPercent ?? mine?.cpuPercent ?? 0;
      return registered.map((b) => b.brokerId === me().brokerId
        ? { brokerId: b.brokerId, url: me().url, httpUrl: myHttp || b.httpUrl, bundleCount: counts.get(b.brokerId) ?? 0, cpuPercent: myCpu, msgRateIn: inRate, msgRateOut: outRate }
        : { brokerId: b.brokerId, url: b.url, httpUrl: b.httpUrl, bundleCount: counts.get(b.brokerId) ?? 0, cpuPercent: b.cpuPercent, msgRateIn: b.msgRateIn, msgRateOut: b.msgRateOut });
    },
  };
}

function sumStats(name: TopicName, all: TopicStats[], ownerUrl: string): TopicStats {
  const sum = (f: (s: TopicStats) => number | string | undefined) => all.reduce((n, s) => n + Number(f(s) ?? 0), 0);
  return {
    topic: name.toString(), msgRateIn: sum((s) => s.msgRateIn), msgThroughputIn: sum((s) => s.msgThroughputIn),
    msgRateOut: sum((s) => s.msgRateOut), msgThroughputOut: sum((s) => s.msgThroughputOut),
    storageSize: sum((s) => Number(s.storageSize)), backlogSize: sum((s) => Number(s.backlogSize)),
    ledgerCount: sum((s) => Number(s.ledgerCount)), entriesAdded: sum((s) => Number(s.entriesAdded)),
    publishers: all.flatMap((s) => s.publishers ?? []), subscriptions: all.flatMap((s) => s.subscriptions ?? []),
    ownerBroker: ownerUrl,
  };
}
