/**
 * `strata admin`: policy flags and the human renderings of the Admin service's answers. The calls
 * themselves go through the SDK's AdminApi (`@strata/client/admin`): deadlines, failover over the hosts of
 * the service URL, and errors as the SDK's ClientError with the broker's domain code kept.
 */
import type { BrokerInfo, BundleInfo, NamespacePolicies, TopicStats } from '@strata/client/admin';
import { UsageError } from './errors.js';
import { formatKeyValues, formatTable } from './table.js';

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
  msgPublishRate?: string;
  bytePublishRate?: string;
  subMsgDispatchRate?: string;
  subByteDispatchRate?: string;
  maxProducersPerTopic?: string;
  maxConsumersPerSubscription?: string;
  maxSubscriptionsPerTopic?: string;
  delayedDelivery?: string;
  maxDeliveryDelayMs?: string;
}

function intFlag(flag: string, v: string, min: number): number {
  if (!/^-?\d+$/.test(v.trim())) throw new UsageError(`${flag} must be an integer, got '${v}'`);
  const n = Number(v);
  if (n < min) throw new UsageError(`${flag} must be >= ${min}, got ${n}`);
  return n;
}

function boolFlag(flag: string, v: string): boolean {
  const lower = v.toLowerCase();
  if (lower !== 'true' && lower !== 'false') throw new UsageError(`${flag} must be true or false, got '${v}'`);
  return lower === 'true';
}

/** Applies the given flags over the current policies; throws UsageError when no flag is given or one is bad. */
export function mergePolicies(current: NamespacePolicies, flags: PolicyFlags): NamespacePolicies {
  const next = { ...current };
  let changed = false;
  if (flags.deduplication !== undefined) {
    next.deduplicationEnabled = boolFlag('--deduplication', flags.deduplication);
    changed = true;
  }
  if (flags.delayedDelivery !== undefined) {
    next.delayedDeliveryDisabled = !boolFlag('--delayed-delivery', flags.delayedDelivery);
    changed = true;
  }
  const ints: [keyof PolicyFlags, keyof NamespacePolicies, string, number][] = [
    ['retentionTimeMinutes', 'retentionTimeMinutes', '--retention-time-minutes', -1],
    ['retentionSizeMb', 'retentionSizeMb', '--retention-size-mb', -1],
    ['messageTtlSeconds', 'messageTtlSeconds', '--message-ttl-seconds', 0],
    ['ensembleSize', 'ensembleSize', '--ensemble-size', 1],
    ['writeQuorum', 'writeQuorum', '--write-quorum', 1],
    ['ackQuorum', 'ackQuorum', '--ack-quorum', 1],
    ['msgPublishRate', 'publishRateMsgsPerSecond', '--msg-publish-rate', 0],
    ['bytePublishRate', 'publishRateBytesPerSecond', '--byte-publish-rate', 0],
    ['subMsgDispatchRate', 'subscriptionDispatchRateMsgsPerSecond', '--sub-msg-dispatch-rate', 0],
    ['subByteDispatchRate', 'subscriptionDispatchRateBytesPerSecond', '--sub-byte-dispatch-rate', 0],
    ['maxProducersPerTopic', 'maxProducersPerTopic', '--max-producers-per-topic', 0],
    ['maxConsumersPerSubscription', 'maxConsumersPerSubscription', '--max-consumers-per-subscription', 0],
    ['maxSubscriptionsPerTopic', 'maxSubscriptionsPerTopic', '--max-subscriptions-per-topic', 0],
    ['maxDeliveryDelayMs', 'maxDeliveryDelayMs', '--max-delivery-delay-ms', 0],
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

export function renderPolicies(p: NamespacePolicies): string {
  return formatKeyValues([
    ['deduplication', p.deduplicationEnabled],
    ['retention time (min)', p.retentionTimeMinutes === -1 ? 'infinite' : p.retentionTimeMinutes],
    ['retention size (MB)', p.retentionSizeMb === -1 ? 'infinite' : p.retentionSizeMb],
    ['message TTL (s)', p.messageTtlSeconds === 0 ? 'none' : p.messageTtlSeconds],
    ['bundles', p.bundles],
    ['ensemble / write / ack', `${p.ensembleSize} / ${p.writeQuorum} / ${p.ackQuorum}`],
    ['publish rate per topic', p.publishRateMsgsPerSecond || p.publishRateBytesPerSecond
      ? `${p.publishRateMsgsPerSecond || 'any'} msg/s, ${p.publishRateBytesPerSecond || 'any'} B/s` : 'no limit'],
    ['delayed delivery', p.delayedDeliveryDisabled ? 'off' : `on${Number(p.maxDeliveryDelayMs) > 0 ? `, at most ${p.maxDeliveryDelayMs} ms ahead` : ''}`],
    ['max producers / topic, consumers / subscription, subscriptions / topic',
      [p.maxProducersPerTopic, p.maxConsumersPerSubscription, p.maxSubscriptionsPerTopic].map((n) => n || 'any').join(' / ')],
    ['dispatch rate per subscription', p.subscriptionDispatchRateMsgsPerSecond || p.subscriptionDispatchRateBytesPerSecond
      ? `${p.subscriptionDispatchRateMsgsPerSecond || 'any'} msg/s, ${p.subscriptionDispatchRateBytesPerSecond || 'any'} B/s` : 'no limit'],
  ]);
}

export function renderTopicStats(s: TopicStats): string {
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

export function renderBrokers(brokers: readonly BrokerInfo[]): string {
  return formatTable(['broker', 'url', 'bundles', 'cpu %', 'msg rate in', 'msg rate out'],
    brokers.map((b) => [b.brokerId, b.url, b.bundleCount, b.cpuPercent, b.msgRateIn, b.msgRateOut]));
}

export function renderBundles(bundles: readonly BundleInfo[]): string {
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
