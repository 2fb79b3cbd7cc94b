import { ErrorCode, StrataError, type EndpointAccess, type HttpEndpoint, type HttpReply, type HttpRequest } from '@strata/runtime';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import type { TopicDomain, TopicName } from '../names.js';
import { MAX_PARTITIONS } from '../resources/namespace-resources.js';
import type { AdminOps, SubscriptionStart } from './admin-ops.js';
import { bodyError, namespaceParam, queryFlag, redirectToOwner, topicParam, type RestTools } from './rest-common.js';

/**
 * Persistent and non-persistent topics of the REST admin API v2 (docs/admin-rest.md), over admin-ops.ts.
 * Operations on one topic's live state run on its owner: other brokers answer 307 (rest-api.ts).
 */

/** Pulsar's TopicStats JSON (the fields Strata measures). */
export interface PulsarTopicStats {
  msgRateIn: number;
  msgThroughputIn: number;
  msgRateOut: number;
  msgThroughputOut: number;
  averageMsgSize: number;
  storageSize: number;
  backlogSize: number;
  publishers: Array<{ producerName: string; msgRateIn: number; msgThroughputIn: number; averageMsgSize: number; address: string }>;
  subscriptions: Record<string, PulsarSubscriptionStats>;
  replication: Record<string, never>;
  deduplicationStatus?: string;
}
interface PulsarSubscriptionStats {
  msgRateOut: number;
  msgBacklog: number;
  type: string;
  unackedMessages: number;
  consumers: Array<{ consumerName: string; availablePermits: number; unackedMessages: number; msgRateOut: number }>;
}

const avg = (bytes: number, msgs: number) => (msgs > 0 ? bytes / msgs : 0);

export function toPulsarStats(s: TopicStats): PulsarTopicStats {
  const subscriptions: Record<string, PulsarSubscriptionStats> = {};
  for (const sub of s.subscriptions ?? []) {
    subscriptions[sub.name ?? ''] = {
      msgRateOut: Number(sub.msgRateOut ?? 0), msgBacklog: Number(sub.msgBacklog ?? 0), type: sub.type ?? '',
      unackedMessages: Number(sub.unackedMessages ?? 0),
      consumers: (sub.consumers ?? []).map((c) => ({
        consumerName: c.consumerName ?? '', availablePermits: Number(c.availablePermits ?? 0),
        unackedMessages: Number(c.unackedMessages ?? 0), msgRateOut: Number(c.msgRateOut ?? 0),
      })),
    };
  }
  const rateIn = Number(s.msgRateIn ?? 0);
  const bytesIn = Number(s.msgThroughputIn ?? 0);
  return {
    msgRateIn: rateIn, msgThroughputIn: bytesIn, msgRateOut: Number(s.msgRateOut ?? 0), msgThroughputOut: Number(s.msgThroughputOut ?? 0),
    averageMsgSize: avg(bytesIn, rateIn), storageSize: Number(s.storageSize ?? 0), backlogSize: Number(s.backlogSize ?? 0),
    publishers: (s.publishers ?? []).map((p) => ({
      producerName: p.producerName ?? '', msgRateIn: Number(p.msgRateIn ?? 0), msgThroughputIn: Number(p.msgThroughputIn ?? 0),
      averageMsgSize: avg(Number(p.msgThroughputIn ?? 0), Number(p.msgRateIn ?? 0)), address: p.address ?? '',
    })),
    subscriptions, replication: {},
  };
}

/** Pulsar's partitioned-stats: the partitions summed (subscriptions merged by name), plus each partition. */
function sumPulsarStats(parts: PulsarTopicStats[]): PulsarTopicStats {
  const out: PulsarTopicStats = {
    msgRateIn: 0, msgThroughputIn: 0, msgRateOut: 0, msgThroughputOut: 0, averageMsgSize: 0, storageSize: 0, backlogSize: 0,
    publishers: [], subscriptions: {}, replication: {},
  };
  for (const p of parts) {
    out.msgRateIn += p.msgRateIn;
    out.msgThroughputIn += p.msgThroughputIn;
    out.msgRateOut += p.msgRateOut;
    out.msgThroughputOut += p.msgThroughputOut;
    out.storageSize += p.storageSize;
    out.backlogSize += p.backlogSize;
    out.publishers.push(...p.publishers);
    for (const [name, sub] of Object.entries(p.subscriptions)) {
      const into = out.subscriptions[name];
      if (!into) {
        out.subscriptions[name] = { ...sub, consumers: [...sub.consumers] };
        continue;
      }
      into.msgRateOut += sub.msgRateOut;
      into.msgBacklog += sub.msgBacklog;
      into.unackedMessages += sub.unackedMessages;
      into.consumers.push(...sub.consumers);
    }
  }
  out.averageMsgSize = avg(out.msgThroughputIn, out.msgRateIn);
  return out;
}

/** The caller's credentials, passed on to the partition owners a fan-out asks, whose gate checks them again. */
function forwardedHeaders(req: HttpRequest): Record<string, string> {
  const auth = req.headers.authorization;
  return auth ? { authorization: auth } : {};
}

/** Time a partition's owner has to answer a partitioned-stats fan-out. */
const PARTITION_STATS_TIMEOUT_MS = 10_000;

/**
 * One partition's stats from wherever it is served: this broker's own, or its owner's REST answer (the
 * fan-out Pulsar's partitioned-stats also does). Refused with 503 when a partition has no owner yet.
 */
async function partitionStats(ops: AdminOps, req: HttpRequest, partition: TopicName, domain: TopicDomain): Promise<PulsarTopicStats> {
  const owner = await ops.ownerOf(partition);
  if (!owner) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `no broker owns the bundle of ${partition} yet; retry`, { retriable: true });
  if (owner.isMine) return toPulsarStats(await ops.topicStats(partition));
  if (!owner.httpUrl) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `${partition} is served by ${owner.brokerId}, which has no HTTP address; retry`, { retriable: true });
  const url = `http://${owner.httpUrl}/admin/v2/${domain}/${partition.tenant}/${partition.namespace}/${encodeURIComponent(partition.localName)}/stats?authoritative=true`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(PARTITION_STATS_TIMEOUT_MS), redirect: 'manual', headers: forwardedHeaders(req) });
  } catch (err) {
    throw new StrataError(ErrorCode.UNAVAILABLE, `stats of ${partition} from ${owner.brokerId} failed`, { retriable: true, cause: err });
  }
  const body = (await res.json().catch(() => ({}))) as PulsarTopicStats & { reason?: string };
  if (res.status !== 200) {
    const code = res.status === 404 ? ErrorCode.NOT_FOUND : ErrorCode.UNAVAILABLE;
    throw new StrataError(code, `stats of ${partition} from ${owner.brokerId}: ${body.reason ?? res.status}`, { retriable: code !== ErrorCode.NOT_FOUND });
  }
  return body;
}

/**
 * Runs a subscription operation on a topic, or on every partition of a partitioned one (as Pulsar
 * does): a partition this broker owns runs here, another is forwarded with the same method and body
 * to its owner's REST API. The first failure is the answer.
 */
async function onEachPartition(
  ops: AdminOps, req: HttpRequest, name: TopicName, domain: TopicDomain, suffix: string, run: (topic: TopicName) => Promise<void>,
): Promise<HttpReply> {
  const n = await ops.partitions(name);
  if (n === 0) {
    const redirect = await redirectToOwner(ops, req, name);
    if (redirect) return redirect;
    await run(name);
    return {};
  }
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    const partition = name.partition(i);
    const owner = await ops.ownerOf(partition);
    if (!owner) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `no broker owns the bundle of ${partition} yet; retry`, { retriable: true });
    if (owner.isMine) return run(partition);
    if (!owner.httpUrl) throw new StrataError(ErrorCode.SERVICE_NOT_READY, `${partition} is served by ${owner.brokerId}, which has no HTTP address; retry`, { retriable: true });
    const query = new URLSearchParams(req.query);
    query.set('authoritative', 'true');
    const url = `http://${owner.httpUrl}/admin/v2/${domain}/${partition.tenant}/${partition.namespace}/${encodeURIComponent(partition.localName)}/${suffix}?${query.toString()}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: req.method, redirect: 'manual', signal: AbortSignal.timeout(PARTITION_STATS_TIMEOUT_MS),
        headers: { ...forwardedHeaders(req), ...(req.body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
      });
    } catch (err) {
      throw new StrataError(ErrorCode.UNAVAILABLE, `${req.method} on ${partition} at ${owner.brokerId} failed`, { retriable: true, cause: err });
    }
    if (res.status >= 300) {
      const body = (await res.json().catch(() => ({}))) as { reason?: string };
      const code = res.status === 404 ? ErrorCode.NOT_FOUND : res.status === 409 ? ErrorCode.ALREADY_EXISTS : ErrorCode.UNAVAILABLE;
      throw new StrataError(code, `${partition} at ${owner.brokerId}: ${body.reason ?? res.status}`, { retriable: code === ErrorCode.UNAVAILABLE });
    }
  }));
  return {};
}

/** Pulsar's create-subscription body: a MessageId; only earliest (-1:-1) and latest (the default) are taken. */
function subscriptionStart(body: unknown): SubscriptionStart {
  if (body === undefined) return 'latest';
  const b = body as { ledgerId?: unknown; entryId?: unknown };
  if (typeof body === 'object' && body !== null && b.ledgerId === -1 && b.entryId === -1) return 'earliest';
  if (typeof body === 'object' && body !== null && b.ledgerId === Number.MAX_SAFE_INTEGER) return 'latest';
  if (body === 'earliest' || body === 'latest') return body;
  throw bodyError('a MessageId of earliest {"ledgerId": -1, "entryId": -1} or latest (or no body: latest)');
}

/** A non-negative count in a path segment; 400 otherwise. */
function countParam(value: string, what: string): number {
  if (!/^[0-9]{1,12}$/.test(value)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `${what} must be a non-negative integer, got ${value.slice(0, 40)}`, { retriable: false });
  return Number(value);
}

function partitionsBody(body: unknown): number {
  // Pulsar takes the count as a bare JSON number; a quoted one ("4") is accepted as curl users send it.
  const n = typeof body === 'string' && /^[0-9]+$/.test(body.trim()) ? Number(body) : body;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw bodyError('the number of partitions, a JSON integer');
  if (n < 1) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `number of partitions must be more than 0, got ${n}`, { retriable: false });
  if (n > MAX_PARTITIONS) throw new StrataError(ErrorCode.PRECONDITION_FAILED, `number of partitions must be at most ${MAX_PARTITIONS}, got ${n}`, { retriable: false });
  return n;
}

export function topicEndpoints({ ops, endpoint }: RestTools): HttpEndpoint[] {
  const out: HttpEndpoint[] = [];
  for (const domain of ['persistent', 'non-persistent'] as const) {
    const base = `/admin/v2/${domain}/:tenant/:namespace`;
    const topic = `${base}/:topic`;
    const onNamespace: EndpointAccess = { action: 'tenant-admin', resourceOf: (p) => `${p.tenant}/${p.namespace}` };
    const onTopic: EndpointAccess = { action: 'tenant-admin', resourceOf: (p) => `${domain}://${p.tenant}/${p.namespace}/${p.topic}` };
    /** A handler that runs on the topic's owner: elsewhere, a 307 to it. */
    const owned = (fn: (req: HttpRequest, name: TopicName) => Promise<HttpReply>) => async (req: HttpRequest): Promise<HttpReply> => {
      const name = topicParam(req, domain);
      return (await redirectToOwner(ops, req, name)) ?? fn(req, name);
    };
    const partitioned = async (name: TopicName): Promise<number> => ops.partitions(name);
    /** Stats of a topic, or of each partition of a partitioned one. */
    const statsOf = async (req: HttpRequest, name: TopicName): Promise<{ partitions: number; parts: PulsarTopicStats[] } | HttpReply> => {
      const n = await partitioned(name);
      if (n === 0) {
        const redirect = await redirectToOwner(ops, req, name);
        if (redirect) return redirect;
        return { partitions: 0, parts: [toPulsarStats(await ops.topicStats(name))] };
      }
      return { partitions: n, parts: await Promise.all(Array.from({ length: n }, (_, i) => partitionStats(ops, req, name.partition(i), domain))) };
    };
    const isReply = (v: object): v is HttpReply => !('parts' in v);

    out.push(
      endpoint('GET', base, onNamespace, async (req) => ({
        body: (await ops.listTopics(namespaceParam(req))).filter((t) => t.startsWith(`${domain}://`)),
      })),
      endpoint('GET', `${base}/partitioned`, onNamespace, async (req) => ({
        body: (await ops.listPartitionedTopics(namespaceParam(req))).filter((t) => t.startsWith(`${domain}://`)),
      })),
      endpoint('PUT', topic, onTopic, owned(async (_req, name) => {
        await ops.createTopic(name);
        return {};
      })),
      endpoint('DELETE', topic, onTopic, async (req) => {
        const name = topicParam(req, domain);
        if ((await partitioned(name)) > 0) {
          throw new StrataError(ErrorCode.ALREADY_EXISTS, `${name} is a partitioned topic: DELETE ${req.path}/partitions`, { retriable: false });
        }
        const redirect = await redirectToOwner(ops, req, name);
        if (redirect) return redirect;
        await ops.deleteTopic(name, queryFlag(req, 'force'));
        return {};
      }, { busyStatus: 412 }),
      endpoint('PUT', `${topic}/partitions`, onTopic, async (req) => {
        const name = topicParam(req, domain);
        await ops.createPartitionedTopic(name, partitionsBody(req.body));
        return {};
      }),
      endpoint('POST', `${topic}/partitions`, onTopic, async (req) => {
        const name = topicParam(req, domain);
        const n = partitionsBody(req.body);
        const current = await partitioned(name);
        if (current === 0) throw new StrataError(ErrorCode.NOT_FOUND, `partitioned topic ${name} not found`, { retriable: false });
        if (n <= current) throw new StrataError(ErrorCode.ALREADY_EXISTS, `${name} has ${current} partitions: the count can only grow, got ${n}`, { retriable: false });
        await ops.updatePartitionedTopic(name, n);
        return {};
      }),
      endpoint('GET', `${topic}/partitions`, onTopic, async (req) => ({ body: { partitions: await partitioned(topicParam(req, domain)) } })),
      endpoint('DELETE', `${topic}/partitions`, onTopic, async (req) => {
        await ops.deletePartitionedTopic(topicParam(req, domain), queryFlag(req, 'force'));
        return {};
      }, { busyStatus: 412 }),
      endpoint('GET', `${topic}/stats`, onTopic, async (req) => {
        const name = topicParam(req, domain);
        const s = await statsOf(req, name);
        if (isReply(s)) return s;
        if (s.partitions > 0) throw new StrataError(ErrorCode.NOT_FOUND, `${name} is a partitioned topic: GET ${req.path.replace(/\/stats$/, '/partitioned-stats')}`, { retriable: false });
        return { body: s.parts[0] };
      }),
      endpoint('GET', `${topic}/partitioned-stats`, onTopic, async (req) => {
        const name = topicParam(req, domain);
        const s = await statsOf(req, name);
        if (isReply(s)) return s;
        if (s.partitions === 0) throw new StrataError(ErrorCode.NOT_FOUND, `partitioned topic ${name} not found`, { retriable: false });
        const perPartition = req.query.get('perPartition') !== 'false';
        return {
          body: {
            ...sumPulsarStats(s.parts), metadata: { partitions: s.partitions },
            partitions: perPartition ? Object.fromEntries(s.parts.map((p, i) => [name.partition(i).toString(), p])) : {},
          },
        };
      }),
      endpoint('GET', `${topic}/subscriptions`, onTopic, async (req) => {
        const s = await statsOf(req, topicParam(req, domain));
        if (isReply(s)) return s;
        return { body: [...new Set(s.parts.flatMap((p) => Object.keys(p.subscriptions)))].sort() };
      }),
      endpoint('GET', `${topic}/internalStats`, onTopic, owned(async (_req, name) => {
        const { stats, lastMessageId } = await ops.topicInternals(name);
        return {
          body: {
            entriesAddedCounter: Number(stats.entriesAdded ?? 0), totalSize: Number(stats.storageSize ?? 0),
            lastConfirmedEntry: `${lastMessageId.ledgerId}:${lastMessageId.entryId}`, numberOfLedgers: Number(stats.ledgerCount ?? 0),
            cursors: Object.fromEntries((stats.subscriptions ?? []).map((sub) => [sub.name ?? '', {
              markDeletePosition: `${Number(sub.markDeletePosition?.ledgerId ?? -1)}:${Number(sub.markDeletePosition?.entryId ?? -1)}`,
              messagesBacklog: Number(sub.msgBacklog ?? 0),
            }])),
          },
        };
      })),
      endpoint('PUT', `${topic}/subscription/:subscription`, onTopic, async (req) => {
        const name = topicParam(req, domain);
        const start = subscriptionStart(req.body);
        const sub = req.params.subscription as string;
        return onEachPartition(ops, req, name, domain, `subscription/${encodeURIComponent(sub)}`, (t) => ops.createSubscription(t, sub, start));
      }),
      endpoint('DELETE', `${topic}/subscription/:subscription`, onTopic, async (req) => {
        const sub = req.params.subscription as string;
        return onEachPartition(ops, req, topicParam(req, domain), domain, `subscription/${encodeURIComponent(sub)}`,
          (t) => ops.deleteSubscription(t, sub, queryFlag(req, 'force')));
      }, { busyStatus: 412 }),
      endpoint('POST', `${topic}/subscription/:subscription/skip_all`, onTopic, async (req) => {
        const sub = req.params.subscription as string;
        return onEachPartition(ops, req, topicParam(req, domain), domain, `subscription/${encodeURIComponent(sub)}/skip_all`,
          (t) => ops.resetSubscription(t, sub, 'latest'));
      }),
      endpoint('POST', `${topic}/subscription/:subscription/resetcursor/:timestamp`, onTopic, async (req) => {
        const sub = req.params.subscription as string;
        const ts = req.params.timestamp as string;
        if (!/^[0-9]{1,16}$/.test(ts)) throw new StrataError(ErrorCode.INVALID_ARGUMENT, `timestamp must be milliseconds since the epoch, got ${ts.slice(0, 40)}`, { retriable: false });
        return onEachPartition(ops, req, topicParam(req, domain), domain, `subscription/${encodeURIComponent(sub)}/resetcursor/${ts}`,
          (t) => ops.resetSubscription(t, sub, { timestampMs: Number(ts) }));
      }),
      endpoint('POST', `${topic}/subscription/:subscription/expireMessages/:seconds`, onTopic, async (req) => {
        const sub = req.params.subscription as string;
        const seconds = countParam(req.params.seconds as string, 'expireTimeInSeconds');
        return onEachPartition(ops, req, topicParam(req, domain), domain, `subscription/${encodeURIComponent(sub)}/expireMessages/${seconds}`,
          (t) => ops.expireSubscription(t, sub, seconds * 1000));
      }),
      endpoint('POST', `${topic}/subscription/:subscription/skip/:count`, onTopic, async (req) => {
        const sub = req.params.subscription as string;
        const count = countParam(req.params.count as string, 'numMessages');
        return onEachPartition(ops, req, topicParam(req, domain), domain, `subscription/${encodeURIComponent(sub)}/skip/${count}`,
          (t) => ops.skipSubscription(t, sub, count));
      }),
      endpoint('PUT', `${topic}/unload`, onTopic, owned(async (_req, name) => {
        await ops.unloadTopic(name);
        return {};
      })),
    );
  }
  return out;
}
