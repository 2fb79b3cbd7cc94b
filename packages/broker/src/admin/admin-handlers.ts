import { bundleForHash, namespaceBundles, splitBundlePolicy, type BundleSpec } from '@strata/coordinator';
import type { Logger } from '@strata/runtime';
import { InvalidRequestError, NotFoundError, UnimplementedError } from '../errors.js';
import type { AdminHandlers } from '../generated/strata/broker/v1/Admin.js';
import type { NamespacePolicies as PoliciesMessage } from '../generated/strata/broker/v1/NamespacePolicies.js';
import type { NamespacePolicies__Output } from '../generated/strata/broker/v1/NamespacePolicies.js';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import { unary } from '../grpc-unary.js';
import { parseNamespace, topicHash, TopicName } from '../names.js';
import type { OwnershipManager } from '../ownership/index.js';
import type { NamespacePolicies } from '../resources/namespace-resources.js';
import type { BrokerService } from '../topics/broker-service.js';

/** What the Admin service needs: topics (through the service and its resources) and bundle ownership. */
export interface AdminHandlersContext {
  service: BrokerService;
  logger: Logger;
  /** Bundle ownership (admin list/unload); without it every bundle is reported as this broker's. */
  ownership?: OwnershipManager;
}

export function adminHandlers(ctx: AdminHandlersContext): AdminHandlers {
  const { service, logger } = ctx;
  const resources = service.resources;
  // Read at call time: the broker learns its address when it binds.
  const me = () => service.ownership.self;
  const u = <Req, Res>(name: string, fn: (req: Req) => Promise<Res>) => unary(logger, name, fn);
  const findBundle = async (namespace: string, range: string): Promise<BundleSpec> => {
    const ns = parseNamespace(namespace);
    const found = bundlesOf(ns.name, await resources.getPolicies(ns.name)).find((b) => rangeOf(b) === range);
    if (!found) throw new NotFoundError(`bundle ${range} of ${ns.name} (ListBundles shows the current ranges)`);
    return found;
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

  const loadedBundleCount = async (topics: string[]): Promise<number> => {
    const ids = new Set<string>();
    for (const key of topics) {
      const name = TopicName.parse(key);
      const bundle = bundleForHash(bundlesOf(name.namespaceName, await resources.getPolicies(name.namespaceName)), topicHash(name));
      if (bundle) ids.add(bundle.id);
    }
    return ids.size;
  };

  const topicStats = async (name: TopicName): Promise<TopicStats> => {
    const topic = await service.getTopic(name, { create: false });
    return topic.stats(me().url);
  };

  return {
    ListTenants: u('ListTenants', async () => ({ names: await resources.listTenants() })),
    CreateTenant: u('CreateTenant', async (req) => {
      await resources.createTenant(req.tenant, { adminRoles: req.adminRoles ?? [], allowedClusters: req.allowedClusters ?? [] });
      return {};
    }),
    DeleteTenant: u('DeleteTenant', async (req) => {
      await resources.deleteTenant(req.tenant);
      return {};
    }),
    ListNamespaces: u('ListNamespaces', async (req) => {
      if (!(await resources.tenantExists(req.tenant))) throw new NotFoundError(`tenant ${req.tenant}`);
      return { names: await resources.listNamespaces(req.tenant) };
    }),
    CreateNamespace: u('CreateNamespace', async (req) => {
      const p = req.policies ? fromMessage(req.policies) : {};
      if (req.bundles) p.bundles = req.bundles;
      await resources.createNamespace(req.namespace, p);
      return {};
    }),
    DeleteNamespace: u('DeleteNamespace', async (req) => {
      const topics = await listTopics(req.namespace);
      await resources.deleteNamespace(req.namespace, topics.length > 0);
      return {};
    }),
    GetNamespacePolicies: u('GetNamespacePolicies', async (req) => toMessage(await resources.getPolicies(req.namespace))),
    SetNamespacePolicies: u('SetNamespacePolicies', async (req) => {
      if (!req.policies) throw new InvalidRequestError('policies missing');
      const current = await resources.getPolicies(req.namespace);
      const next: NamespacePolicies = { ...current, ...fromMessage(req.policies) };
      // Retention/TTL zeros are real values in a full replacement.
      next.retentionTimeMinutes = req.policies.retentionTimeMinutes;
      next.retentionSizeMb = req.policies.retentionSizeMb;
      next.messageTtlSeconds = req.policies.messageTtlSeconds;
      next.deduplicationEnabled = req.policies.deduplicationEnabled;
      await resources.setPolicies(req.namespace, next);
      await service.applyPolicies(parseNamespace(req.namespace).name, next);
      return {};
    }),
    ListTopics: u('ListTopics', async (req) => ({ names: await listTopics(req.namespace) })),
    CreatePartitionedTopic: u('CreatePartitionedTopic', async (req) => {
      await resources.createPartitionedTopic(TopicName.parse(req.topic), req.partitions);
      return {};
    }),
    DeletePartitionedTopic: u('DeletePartitionedTopic', async (req) => {
      const name = TopicName.parse(req.topic);
      const partitions = await resources.getPartitions(name);
      if (partitions === 0) throw new NotFoundError(`partitioned topic ${name}`);
      for (let i = 0; i < partitions; i++) {
        try {
          await service.deleteTopic(name.partition(i), req.force);
        } catch (err) {
          if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
        }
      }
      await resources.deletePartitionedTopic(name);
      return {};
    }),
    ListPartitionedTopics: u('ListPartitionedTopics', async (req) => ({ names: await resources.listPartitionedTopics(req.namespace) })),
    DeleteTopic: u('DeleteTopic', async (req) => {
      await service.deleteTopic(TopicName.parse(req.topic), req.force);
      return {};
    }),
    GetTopicStats: u('GetTopicStats', async (req) => {
      const name = TopicName.parse(req.topic);
      const partitions = await resources.getPartitions(name);
      if (partitions === 0) return topicStats(name);
      // A partitioned topic: the sum of its partitions' stats (subscriptions listed per partition).
      const all = await Promise.all(Array.from({ length: partitions }, (_, i) => topicStats(name.partition(i))));
      const sum = (f: (s: TopicStats) => number | string | undefined) => all.reduce((n, s) => n + Number(f(s) ?? 0), 0);
      return {
        topic: name.toString(), msgRateIn: sum((s) => s.msgRateIn), msgThroughputIn: sum((s) => s.msgThroughputIn),
        msgRateOut: sum((s) => s.msgRateOut), msgThroughputOut: sum((s) => s.msgThroughputOut),
        storageSize: sum((s) => Number(s.storageSize)), backlogSize: sum((s) => Number(s.backlogSize)),
        ledgerCount: sum((s) => Number(s.ledgerCount)), entriesAdded: sum((s) => Number(s.entriesAdded)),
        publishers: all.flatMap((s) => s.publishers ?? []), subscriptions: all.flatMap((s) => s.subscriptions ?? []),
        ownerBroker: me().url,
      };
    }),
    ListBrokers: u('ListBrokers', async () => {
      // Every broker with a live session (brokers/<id>): CPU and rates from its last load report, bundle
      // counts from the ownership keys; this broker adds its own rates and CPU measured now.
      let inRate = 0;
      let outRate = 0;
      const loaded = service.loadedTopicNames();
      for (const key of loaded) {
        const s = (await service.loadedTopic(TopicName.parse(key)))?.stats(me().url);
        inRate += Number(s?.msgRateIn ?? 0);
        outRate += Number(s?.msgRateOut ?? 0);
      }
      const registered = await service.resources.listBrokers();
      const mine = registered.find((b) => b.brokerId === me().brokerId);
      if (!mine) registered.push({ brokerId: me().brokerId, url: me().url, cpuPercent: 0, msgRateIn: 0, msgRateOut: 0 });
      // Without bundle ownership (one broker) every bundle with a loaded topic is this broker's.
      const counts = ctx.ownership ? await resources.countOwnedBundles() : new Map([[me().brokerId, await loadedBundleCount(loaded)]]);
      const myCpu = ctx.ownership?.cpuPercent ?? mine?.cpuPercent ?? 0;
      return {
        brokers: registered.map((b) => b.brokerId === me().brokerId
          ? { brokerId: b.brokerId, url: me().url, bundleCount: counts.get(b.brokerId) ?? 0, cpuPercent: myCpu, msgRateIn: inRate, msgRateOut: outRate }
          : { brokerId: b.brokerId, url: b.url, bundleCount: counts.get(b.brokerId) ?? 0, cpuPercent: b.cpuPercent, msgRateIn: b.msgRateIn, msgRateOut: b.msgRateOut }),
      };
    }),
    ListBundles: u('ListBundles', async (req) => {
      const ns = parseNamespace(req.namespace);
      const owners = ctx.ownership?.owners();
      return {
        bundles: bundlesOf(ns.name, await resources.getPolicies(ns.name)).map((b) => {
          const owner = owners ? owners.get(b.id) : me();
          return { namespace: ns.name, range: rangeOf(b), ownerBrokerId: owner?.brokerId ?? '', ownerUrl: owner?.url ?? '' };
        }),
      };
    }),
    LookupBundle: u('LookupBundle', async (req) => {
      const name = TopicName.parse(req.topic);
      const policies = await resources.getPolicies(name.namespaceName);
      const owner = await service.ownership.ownerOf(name);
      const bundle = bundleForHash(bundlesOf(name.namespaceName, policies), topicHash(name)) as BundleSpec;
      return { namespace: name.namespaceName, range: rangeOf(bundle), ownerBrokerId: owner?.brokerId ?? '', ownerUrl: owner?.url ?? '' };
    }),
    UnloadBundle: u('UnloadBundle', async (req) => {
      if (!ctx.ownership) throw new UnimplementedError('UnloadBundle without bundle ownership');
      const bundle = await findBundle(req.namespace, req.range);
      // Any broker can take the request: it writes the assignment, and the owner obeys it (decision 0062).
      await ctx.ownership.requestUnload(bundle.id, req.destinationBrokerId || undefined);
      return {};
    }),
    SplitBundle: u('SplitBundle', async (req) => {
      const bundle = await findBundle(req.namespace, req.range);
      const current = await resources.getPolicies(bundle.namespace);
      // The same split as the coordinator's automatic one (decision 0068): the middle of the range.
      const next = splitBundlePolicy(bundle.namespace, current, bundle.start);
      if (!next) throw new InvalidRequestError(`bundle ${bundle.id} cannot be split further`);
      // One CAS write of the policy (decision 0061): the owner unloads the old range, the coordinator assigns the halves.
      await resources.setPolicies(bundle.namespace, next);
      return {};
    }),
  };
}

function fromMessage(p: NamespacePolicies__Output): Partial<NamespacePolicies> {
  const out: Partial<NamespacePolicies> = {
    deduplicationEnabled: p.deduplicationEnabled,
    retentionTimeMinutes: Number(p.retentionTimeMinutes), retentionSizeMb: Number(p.retentionSizeMb),
    messageTtlSeconds: p.messageTtlSeconds,
  };
  if (p.bundles) out.bundles = p.bundles;
  // Quorums: 0 means the broker default, so they are always taken as given.
  out.ensembleSize = p.ensembleSize;
  out.writeQuorum = p.writeQuorum;
  out.ackQuorum = p.ackQuorum;
  return out;
}

function toMessage(p: NamespacePolicies): PoliciesMessage {
  const { bundleBoundaries: _split, ...rest } = p;
  return rest;
}

function bundlesOf(namespace: string, p: NamespacePolicies): BundleSpec[] {
  return namespaceBundles(namespace, { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries });
}

/** "0x00000000_0x40000000": the bundle id without its namespace. */
function rangeOf(b: BundleSpec): string {
  return b.id.slice(b.namespace.length + 1);
}
