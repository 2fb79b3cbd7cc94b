import { bundleForHash, namespaceBundles, type BundleSpec } from '@strata/coordinator';
import type { Logger } from '@strata/runtime';
import { InvalidRequestError } from '../errors.js';
import type { AdminHandlers } from '../generated/strata/broker/v1/Admin.js';
import type { NamespacePolicies as PoliciesMessage } from '../generated/strata/broker/v1/NamespacePolicies.js';
import type { NamespacePolicies__Output } from '../generated/strata/broker/v1/NamespacePolicies.js';
import { unary } from '../grpc-unary.js';
import { parseNamespace, topicHash, TopicName } from '../names.js';
import type { OwnershipManager } from '../ownership/index.js';
import type { NamespacePolicies } from '../resources/namespace-resources.js';
import type { BrokerService } from '../topics/broker-service.js';
import { adminOps } from './admin-ops.js';

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
  const ops = adminOps(ctx);
  // Read at call time: the broker learns its address when it binds.
  const me = () => service.ownership.self;
  const u = <Req, Res>(name: string, fn: (req: Req) => Promise<Res>) => unary(logger, name, fn);
  return {
    ListTenants: u('ListTenants', async () => ({ names: await ops.listTenants() })),
    CreateTenant: u('CreateTenant', async (req) => {
      await ops.createTenant(req.tenant, { adminRoles: req.adminRoles ?? [], allowedClusters: req.allowedClusters ?? [] });
      return {};
    }),
    DeleteTenant: u('DeleteTenant', async (req) => {
      await ops.deleteTenant(req.tenant);
      return {};
    }),
    ListNamespaces: u('ListNamespaces', async (req) => ({ names: await ops.listNamespaces(req.tenant) })),
    CreateNamespace: u('CreateNamespace', async (req) => {
      const p = req.policies ? fromMessage(req.policies) : {};
      if (req.bundles) p.bundles = req.bundles;
      await ops.createNamespace(req.namespace, p);
      return {};
    }),
    DeleteNamespace: u('DeleteNamespace', async (req) => {
      await ops.deleteNamespace(req.namespace);
      return {};
    }),
    GetNamespacePolicies: u('GetNamespacePolicies', async (req) => toMessage(await ops.getPolicies(req.namespace))),
    SetNamespacePolicies: u('SetNamespacePolicies', async (req) => {
      const given = req.policies;
      if (!given) throw new InvalidRequestError('policies missing');
      await ops.updatePolicies(req.namespace, (current) => ({
        ...current, ...fromMessage(given),
        // Retention/TTL zeros are real values in a full replacement.
        retentionTimeMinutes: Number(given.retentionTimeMinutes), retentionSizeMb: Number(given.retentionSizeMb),
        messageTtlSeconds: given.messageTtlSeconds, deduplicationEnabled: given.deduplicationEnabled,
      }));
      return {};
    }),
    ListTopics: u('ListTopics', async (req) => ({ names: await ops.listTopics(req.namespace) })),
    CreatePartitionedTopic: u('CreatePartitionedTopic', async (req) => {
      await ops.createPartitionedTopic(TopicName.parse(req.topic), req.partitions);
      return {};
    }),
    DeletePartitionedTopic: u('DeletePartitionedTopic', async (req) => {
      await ops.deletePartitionedTopic(TopicName.parse(req.topic), req.force);
      return {};
    }),
    ListPartitionedTopics: u('ListPartitionedTopics', async (req) => ({ names: await ops.listPartitionedTopics(req.namespace) })),
    DeleteTopic: u('DeleteTopic', async (req) => {
      await ops.deleteTopic(TopicName.parse(req.topic), req.force);
      return {};
    }),
    GetTopicStats: u('GetTopicStats', async (req) => ops.topicStats(TopicName.parse(req.topic))),
    ListBrokers: u('ListBrokers', async () => ({
      brokers: (await ops.listBrokers()).map((b) => ({
        brokerId: b.brokerId, url: b.url, bundleCount: b.bundleCount, cpuPercent: b.cpuPercent, msgRateIn: b.msgRateIn, msgRateOut: b.msgRateOut,
      })),
    })),
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
      await ops.unloadBundle(req.namespace, req.range, req.destinationBrokerId || undefined);
      return {};
    }),
    SplitBundle: u('SplitBundle', async (req) => {
      await ops.splitBundle(req.namespace, req.range);
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
  out.publishRateMsgsPerSecond = p.publishRateMsgsPerSecond;
  out.publishRateBytesPerSecond = p.publishRateBytesPerSecond;
  out.subscriptionDispatchRateMsgsPerSecond = p.subscriptionDispatchRateMsgsPerSecond;
  out.subscriptionDispatchRateBytesPerSecond = p.subscriptionDispatchRateBytesPerSecond;
  out.maxProducersPerTopic = p.maxProducersPerTopic;
  out.maxConsumersPerSubscription = p.maxConsumersPerSubscription;
  out.maxSubscriptionsPerTopic = p.maxSubscriptionsPerTopic;
  out.delayedDeliveryEnabled = !p.delayedDeliveryDisabled;
  out.maxDeliveryDelayMs = Number(p.maxDeliveryDelayMs);
  return out;
}

function toMessage(p: NamespacePolicies): PoliciesMessage {
  const { bundleBoundaries: _split, delayedDeliveryEnabled, ...rest } = p;
  return { ...rest, delayedDeliveryDisabled: delayedDeliveryEnabled === false };
}

function bundlesOf(namespace: string, p: NamespacePolicies): BundleSpec[] {
  return namespaceBundles(namespace, { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries });
}

/** "0x00000000_0x40000000": the bundle id without its namespace. */
function rangeOf(b: BundleSpec): string {
  return b.id.slice(b.namespace.length + 1);
}
