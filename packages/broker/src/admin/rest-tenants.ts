import { ErrorCode, StrataError, type EndpointAccess, type HttpEndpoint, type HttpRequest } from '@strata/runtime';
import { namespaceBundles } from '@strata/coordinator';
import { RESOURCE_LIMITS, type NamespacePolicies, type TenantInfo } from '../resources/namespace-resources.js';
import { bodyError, namespaceParam, tenantParam, type RestTools } from './rest-common.js';

/** Tenants and namespaces of the REST admin API v2 (docs/admin-rest.md), over admin-ops.ts. */

const superUser: EndpointAccess = { action: 'super-user' };
const onTenant: EndpointAccess = { action: 'tenant-admin', resourceOf: (p) => p.tenant };
const onNamespace: EndpointAccess = { action: 'tenant-admin', resourceOf: (p) => `${p.tenant}/${p.namespace}` };

export function tenantEndpoints({ ops, ctx, endpoint }: RestTools): HttpEndpoint[] {
  /** Pulsar's TenantInfo; allowedClusters must name this cluster (412 otherwise, as Pulsar's "Clusters do not exist"). */
  const tenantInfo = (body: unknown): TenantInfo => {
    if (body === undefined) return { adminRoles: [], allowedClusters: [ctx.cluster] };
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bodyError('a TenantInfo object {"adminRoles": [...], "allowedClusters": [...]}');
    const b = body as { adminRoles?: unknown; allowedClusters?: unknown };
    const strings = (v: unknown, what: string): string[] | undefined => {
      if (v === undefined || v === null) return undefined;
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bodyError(`a TenantInfo whose ${what} is an array of strings`);
      return v as string[];
    };
    const adminRoles = strings(b.adminRoles, 'adminRoles') ?? [];
    const allowedClusters = strings(b.allowedClusters, 'allowedClusters') ?? [ctx.cluster];
    const unknown = allowedClusters.filter((c) => c !== ctx.cluster);
    if (unknown.length > 0) throw new StrataError(ErrorCode.PRECONDITION_FAILED, `clusters do not exist: ${unknown.join(', ')} (this is ${ctx.cluster})`, { retriable: false });
    return { adminRoles, allowedClusters };
  };
  return [
    endpoint('GET', '/admin/v2/tenants', superUser, async () => ({ body: await ops.listTenants() })),
    endpoint('GET', '/admin/v2/tenants/:tenant', superUser, async (req) => ({ body: await ops.getTenant(tenantParam(req)) })),
    endpoint('PUT', '/admin/v2/tenants/:tenant', superUser, async (req) => {
      await ops.createTenant(tenantParam(req), tenantInfo(req.body));
      return {};
    }),
    endpoint('POST', '/admin/v2/tenants/:tenant', superUser, async (req) => {
      await ops.updateTenant(tenantParam(req), tenantInfo(req.body));
      return {};
    }),
    endpoint('DELETE', '/admin/v2/tenants/:tenant', superUser, async (req) => {
      await ops.deleteTenant(tenantParam(req));
      return {};
    }),
  ];
}

/** Pulsar's Policies JSON (the fields Strata keeps) from and to NamespacePolicies. */
interface PulsarPolicies {
  bundles?: { numBundles?: number; boundaries?: string[] };
  retention_policies?: RetentionPolicies;
  message_ttl_in_seconds?: number;
  deduplicationEnabled?: boolean;
  persistence?: PersistencePolicies;
  replication_clusters?: string[];
  /** Per cluster, as Pulsar keys it. */
  publishMaxMessageRate?: Record<string, { publishThrottlingRateInMsg: number; publishThrottlingRateInByte: number }>;
}
interface RetentionPolicies { retentionTimeInMinutes: number; retentionSizeInMB: number }
interface PersistencePolicies { bookkeeperEnsemble: number; bookkeeperWriteQuorum: number; bookkeeperAckQuorum: number; managedLedgerMaxMarkDeleteRate: number }

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

function boundariesOf(namespace: string, p: NamespacePolicies): string[] {
  const bundles = namespaceBundles(namespace, { bundles: p.bundles, bundleBoundaries: p.bundleBoundaries });
  return [...bundles.map((b) => hex(b.start)), hex(0xffffffff)];
}

function toPulsar(namespace: string, p: NamespacePolicies, cluster: string): PulsarPolicies {
  const out: PulsarPolicies = {
    bundles: { numBundles: p.bundles, boundaries: boundariesOf(namespace, p) },
    retention_policies: { retentionTimeInMinutes: p.retentionTimeMinutes, retentionSizeInMB: p.retentionSizeMb },
    deduplicationEnabled: p.deduplicationEnabled,
    replication_clusters: [cluster],
  };
  if (p.messageTtlSeconds > 0) out.message_ttl_in_seconds = p.messageTtlSeconds;
  if (p.ensembleSize > 0) out.persistence = persistenceOf(p) as PersistencePolicies;
  const rate = publishRateOf(p);
  if (rate) out.publishMaxMessageRate = { [cluster]: rate };
  return out;
}

function persistenceOf(p: NamespacePolicies): PersistencePolicies | undefined {
  if (p.ensembleSize === 0) return undefined;
  return { bookkeeperEnsemble: p.ensembleSize, bookkeeperWriteQuorum: p.writeQuorum, bookkeeperAckQuorum: p.ackQuorum, managedLedgerMaxMarkDeleteRate: 0 };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const int = (v: unknown, what: string): number => {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw bodyError(`${what}: an integer`);
  return v;
};

function retentionFrom(body: unknown): Pick<NamespacePolicies, 'retentionTimeMinutes' | 'retentionSizeMb'> {
  if (!isObject(body)) throw bodyError('a RetentionPolicies object {"retentionTimeInMinutes": n, "retentionSizeInMB": n}');
  return {
    retentionTimeMinutes: int(body.retentionTimeInMinutes ?? 0, 'retentionTimeInMinutes'),
    retentionSizeMb: int(body.retentionSizeInMB ?? 0, 'retentionSizeInMB'),
  };
}

function persistenceFrom(body: unknown): Pick<NamespacePolicies, 'ensembleSize' | 'writeQuorum' | 'ackQuorum'> {
  if (!isObject(body)) throw bodyError('a PersistencePolicies object {"bookkeeperEnsemble": n, "bookkeeperWriteQuorum": n, "bookkeeperAckQuorum": n}');
  return {
    ensembleSize: int(body.bookkeeperEnsemble, 'bookkeeperEnsemble'), writeQuorum: int(body.bookkeeperWriteQuorum, 'bookkeeperWriteQuorum'),
    ackQuorum: int(body.bookkeeperAckQuorum, 'bookkeeperAckQuorum'),
  };
}

function publishRateOf(p: NamespacePolicies): { publishThrottlingRateInMsg: number; publishThrottlingRateInByte: number } | undefined {
  const msgs = p.publishRateMsgsPerSecond ?? 0;
  const bytes = p.publishRateBytesPerSecond ?? 0;
  if (msgs === 0 && bytes === 0) return undefined;
  return { publishThrottlingRateInMsg: msgs || -1, publishThrottlingRateInByte: bytes || -1 };
}

function publishRateFrom(body: unknown): Pick<NamespacePolicies, 'publishRateMsgsPerSecond' | 'publishRateBytesPerSecond'> {
  if (!isObject(body)) throw bodyError('a PublishRate object {"publishThrottlingRateInMsg": n, "publishThrottlingRateInByte": n}');
  const limit = (v: unknown, what: string) => Math.max(0, int(v ?? -1, what));
  return {
    publishRateMsgsPerSecond: limit(body.publishThrottlingRateInMsg, 'publishThrottlingRateInMsg'),
    publishRateBytesPerSecond: limit(body.publishThrottlingRateInByte, 'publishThrottlingRateInByte'),
  };
}

function dispatchRateOf(p: NamespacePolicies): { dispatchThrottlingRateInMsg: number; dispatchThrottlingRateInByte: number; ratePeriodInSecond: number; relativeToPublishRate: boolean } | undefined {
  const msgs = p.subscriptionDispatchRateMsgsPerSecond ?? 0;
  const bytes = p.subscriptionDispatchRateBytesPerSecond ?? 0;
  if (msgs === 0 && bytes === 0) return undefined;
  return { dispatchThrottlingRateInMsg: msgs || -1, dispatchThrottlingRateInByte: bytes || -1, ratePeriodInSecond: 1, relativeToPublishRate: false };
}

function dispatchRateFrom(body: unknown): Pick<NamespacePolicies, 'subscriptionDispatchRateMsgsPerSecond' | 'subscriptionDispatchRateBytesPerSecond'> {
  if (!isObject(body)) throw bodyError('a DispatchRate object {"dispatchThrottlingRateInMsg": n, "dispatchThrottlingRateInByte": n}');
  if (body.ratePeriodInSecond !== undefined && body.ratePeriodInSecond !== 1) throw bodyError('ratePeriodInSecond: only 1 is supported');
  if (body.relativeToPublishRate === true) throw bodyError('relativeToPublishRate is not supported');
  const limit = (v: unknown, what: string) => Math.max(0, int(v ?? -1, what));
  return {
    subscriptionDispatchRateMsgsPerSecond: limit(body.dispatchThrottlingRateInMsg, 'dispatchThrottlingRateInMsg'),
    subscriptionDispatchRateBytesPerSecond: limit(body.dispatchThrottlingRateInByte, 'dispatchThrottlingRateInByte'),
  };
}

/** The policies a namespace create may carry (Pulsar's Policies body); absent fields keep the defaults. */
function policiesFrom(body: unknown): Partial<NamespacePolicies> {
  if (body === undefined) return {};
  if (!isObject(body)) throw bodyError('a Policies object');
  const out: Partial<NamespacePolicies> = {};
  if (body.bundles !== undefined) {
    if (!isObject(body.bundles)) throw bodyError('a Policies whose bundles is {"numBundles": n}');
    if (body.bundles.boundaries !== undefined) throw bodyError('a Policies without bundles.boundaries (only numBundles is taken; split bundles with the admin SplitBundle)');
    out.bundles = int(body.bundles.numBundles, 'bundles.numBundles');
  }
  if (body.retention_policies !== undefined) Object.assign(out, retentionFrom(body.retention_policies));
  if (body.message_ttl_in_seconds !== undefined) out.messageTtlSeconds = int(body.message_ttl_in_seconds, 'message_ttl_in_seconds');
  if (body.deduplicationEnabled !== undefined) {
    if (typeof body.deduplicationEnabled !== 'boolean') throw bodyError('a Policies whose deduplicationEnabled is a boolean');
    out.deduplicationEnabled = body.deduplicationEnabled;
  }
  if (body.persistence !== undefined) Object.assign(out, persistenceFrom(body.persistence));
  return out;
}

export function namespaceEndpoints({ ops, ctx, endpoint }: RestTools): HttpEndpoint[] {
  const ns = '/admin/v2/namespaces/:tenant/:namespace';
  /** A policy's GET, POST (set) and DELETE (back to the broker default), as Pulsar's per-policy endpoints. */
  const policy = <T>(
    name: string, get: (p: NamespacePolicies) => T | undefined,
    set: (body: unknown) => Partial<NamespacePolicies>, reset: Partial<NamespacePolicies>,
  ): HttpEndpoint[] => {
    const update = async (req: HttpRequest, change: Partial<NamespacePolicies>) => {
      await ops.updatePolicies(namespaceParam(req), (current) => ({ ...current, ...change }));
      return {};
    };
    return [
      endpoint('GET', `${ns}/${name}`, onNamespace, async (req) => ({ body: get(await ops.getPolicies(namespaceParam(req))) })),
      endpoint('POST', `${ns}/${name}`, onNamespace, async (req) => update(req, set(req.body))),
      endpoint('DELETE', `${ns}/${name}`, onNamespace, async (req) => update(req, reset)),
    ];
  };
  return [
    endpoint('GET', '/admin/v2/namespaces/:tenant', onTenant, async (req) => ({ body: await ops.listNamespaces(tenantParam(req)) })),
    endpoint('PUT', ns, onNamespace, async (req) => {
      // Parse the name first: a bad name is 412 whatever the body says.
      const name = namespaceParam(req);
      await ops.createNamespace(name, policiesFrom(req.body));
      return {};
    }),
    endpoint('GET', ns, onNamespace, async (req) => {
      const name = namespaceParam(req);
      return { body: toPulsar(name, await ops.getPolicies(name), ctx.cluster) };
    }),
    endpoint('DELETE', ns, onNamespace, async (req) => {
      await ops.deleteNamespace(namespaceParam(req));
      return {};
    }),
    // Pulsar's mode: PERSISTENT (the default), NON_PERSISTENT or ALL.
    endpoint('GET', `${ns}/topics`, onNamespace, async (req) => {
      const mode = (req.query.get('mode') ?? 'PERSISTENT').toUpperCase();
      const prefix = { PERSISTENT: 'persistent://', NON_PERSISTENT: 'non-persistent://', ALL: '' }[mode];
      if (prefix === undefined) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `mode must be PERSISTENT, NON_PERSISTENT or ALL, got ${mode.slice(0, 40)}`, { retriable: false });
      return { body: (await ops.listTopics(namespaceParam(req))).filter((t) => t.startsWith(prefix)) };
    }),
    endpoint('GET', `${ns}/bundles`, onNamespace, async (req) => {
      const name = namespaceParam(req);
      const p = await ops.getPolicies(name);
      return { body: { boundaries: boundariesOf(name, p), numBundles: p.bundles } };
    }),
    // Bundles by Pulsar's range name, 0x00000000_0x40000000 (GET .../bundles lists the boundaries);
    // super-user, as the gRPC UnloadBundle and SplitBundle (admin-access.ts).
    endpoint('PUT', `${ns}/:bundle/unload`, superUser, async (req) => {
      await ops.unloadBundle(namespaceParam(req), req.params.bundle as string);
      return {};
    }),
    endpoint('PUT', `${ns}/:bundle/split`, superUser, async (req) => {
      await ops.splitBundle(namespaceParam(req), req.params.bundle as string);
      return {};
    }),
    endpoint('PUT', `${ns}/unload`, superUser, async (req) => {
      await ops.unloadNamespace(namespaceParam(req));
      return {};
    }),
    ...policy('retention', (p) => ({ retentionTimeInMinutes: p.retentionTimeMinutes, retentionSizeInMB: p.retentionSizeMb }),
      retentionFrom, { retentionTimeMinutes: 0, retentionSizeMb: 0 }),
    // Pulsar answers an unset TTL with no body (204).
    ...policy('messageTTL', (p) => (p.messageTtlSeconds > 0 ? p.messageTtlSeconds : undefined),
      (b) => ({ messageTtlSeconds: int(b, 'a TTL in seconds') }), { messageTtlSeconds: 0 }),
    ...policy('deduplication', (p) => p.deduplicationEnabled, (b) => {
      if (typeof b !== 'boolean') throw bodyError('true or false');
      return { deduplicationEnabled: b };
    }, { deduplicationEnabled: false }),
    ...policy('persistence', persistenceOf, persistenceFrom, { ensembleSize: 0, writeQuorum: 0, ackQuorum: 0 }),
    // Pulsar's PublishRate: each topic's limit; -1 (or 0) in a field is no limit; unset answers 204.
    ...policy('publishRate', publishRateOf, publishRateFrom, { publishRateMsgsPerSecond: 0, publishRateBytesPerSecond: 0 }),
    // Pulsar's DispatchRate, each subscription's limit (ratePeriodInSecond: Strata's period is 1 s).
    ...policy('subscriptionDispatchRate', dispatchRateOf, dispatchRateFrom, { subscriptionDispatchRateMsgsPerSecond: 0, subscriptionDispatchRateBytesPerSecond: 0 }),
    // Pulsar's DelayedDeliveryPolicies (tickTime: Strata's timer is exact, the value is kept as 1 s).
    ...policy('delayedDelivery', (p) => ({ active: p.delayedDeliveryEnabled !== false, tickTime: 1000, maxDeliveryDelayInMillis: p.maxDeliveryDelayMs ?? 0 }), (b) => {
      if (!isObject(b) || typeof b.active !== 'boolean') throw bodyError('a DelayedDeliveryPolicies object {"active": true|false, "maxDeliveryDelayInMillis": n}');
      return { delayedDeliveryEnabled: b.active, maxDeliveryDelayMs: Math.max(0, int(b.maxDeliveryDelayInMillis ?? 0, 'maxDeliveryDelayInMillis')) };
    }, { delayedDeliveryEnabled: true, maxDeliveryDelayMs: 0 }),
    // Resource limits: a JSON number (0: none); unset answers 204.
    ...RESOURCE_LIMITS.flatMap((k) => policy(k, (p) => p[k] || undefined, (b) => ({ [k]: Math.max(0, int(b, `${k}: a number`)) }), { [k]: 0 })),
  ];
}
