// Invariants: a CompiledConsumerConfig comes only out of compileConsumerConfig, so the rest of the
// consumer trusts it blindly: every option checked, every default filled, topic names fully qualified.
// Unknown and unsupported options are rejected here, never ignored, so that an application ported from
// pulsar-client never silently loses a setting it relies on.
import { ClientError, ClientErrorCode, configError, unsupportedOption } from '../errors.js';
import type { Message } from '../message.js';
import { checkStringMap } from '../producer.js';
import { fullTopicName, namespaceOf } from '../topic.js';

export type SubscriptionType = 'Exclusive' | 'Shared' | 'KeyShared' | 'Failover';
export type InitialPosition = 'Latest' | 'Earliest';
export type ConsumerKeyShareMode = 'AutoSplit' | 'Sticky';

export interface DeadLetterPolicy {
  /** Default `<topic>-<subscription>-DLQ`. */
  deadLetterTopic?: string;
  /** Deliveries after the first before a message goes to the dead-letter topic. Default 16 (with a policy). */
  maxRedeliverCount?: number;
  /** A subscription created on the dead-letter topic before the first message is written to it. */
  initialSubscriptionName?: string;
  /** With enableRetry: where reconsumeLater() sends messages. Default `<topic>-<subscription>-RETRY`. */
  retryLetterTopic?: string;
}

export interface ConsumerBatchReceivePolicy {
  /** Default 100. */
  maxNumMessages?: number;
  /** Default 10 MB. */
  maxNumBytes?: number;
  /** Default 100 ms. */
  timeoutMs?: number;
}

export interface KeySharedPolicy {
  keyShareMode?: ConsumerKeyShareMode;
  allowOutOfOrderDelivery?: boolean;
  stickyRanges?: { start: number; end: number }[];
}

/**
 * pulsar-client's ConsumerConfig, restricted to what Strata supports (others are rejected). Generic in
 * the listener's consumer only so that this file needs nothing from the Consumer class above it: the
 * public `ConsumerConfig` (consumer.ts) is this with the Consumer class filled in.
 */
export type RegexSubscriptionMode = 'PersistentOnly' | 'NonPersistentOnly' | 'AllTopics';

export interface ConsumerOptions<TConsumer> {
  topic?: string;
  topics?: string[];
  topicsPattern?: string;
  /**
   * Pulsar's retry letter topic: the consumer also subscribes to the retry topic, and
   * `reconsumeLater(message, delayMs)` moves a message there to come back after the delay, at most
   * `deadLetterPolicy.maxRedeliverCount` times (default 16), then to the dead-letter topic.
   */
  enableRetry?: boolean;
  /**
   * Acknowledge messages of a batch one by one on the broker too, so that after a reconnect or restart
   * only the unacknowledged ones of a batch come back. Default false: a batch is acked when all of it is.
   */
  batchIndexAckEnabled?: boolean;
  /** Which topics topicsPattern matches. Default: the pattern's own domain (persistent without one). */
  regexSubscriptionMode?: RegexSubscriptionMode;
  subscription: string;
  subscriptionType?: SubscriptionType;
  subscriptionInitialPosition?: InitialPosition;
  /** Redeliver a message not acknowledged within this time (0: never, else >= 10000). */
  ackTimeoutMs?: number;
  /** Delay before a negatively acknowledged message is redelivered. Default 60000. */
  nAckRedeliverTimeoutMs?: number;
  /** Entries (not messages: see docs/client.md) buffered per topic partition. Default 1000. */
  receiverQueueSize?: number;
  consumerName?: string;
  properties?: { [key: string]: string };
  listener?: (message: Message, consumer: TConsumer) => void | Promise<void>;
  deadLetterPolicy?: DeadLetterPolicy;
  batchReceivePolicy?: ConsumerBatchReceivePolicy;
  keySharedPolicy?: KeySharedPolicy;
  /** Strata extension: how often topicsPattern is re-listed. Default 60000. */
  patternAutoDiscoveryPeriodMs?: number;
  /**
   * pulsar-client's ack receipts: an acknowledge() promise resolves only once the broker persisted the
   * cursor state that includes it, so a confirmed ack is never redelivered after any crash. Default false:
   * it resolves when the broker applied it, and a crash may redeliver up to the cursor flush interval.
   */
  ackReceiptEnabled?: boolean;
}

const SUPPORTED_CONSUMER_OPTIONS = new Set([
  'topic', 'topics', 'topicsPattern', 'subscription', 'subscriptionType', 'subscriptionInitialPosition', 'ackTimeoutMs',
  'nAckRedeliverTimeoutMs', 'receiverQueueSize', 'consumerName', 'properties', 'listener', 'deadLetterPolicy',
  'batchReceivePolicy', 'keySharedPolicy', 'patternAutoDiscoveryPeriodMs', 'regexSubscriptionMode', 'batchIndexAckEnabled', 'enableRetry', 'ackReceiptEnabled',
]);
const KNOWN_UNSUPPORTED: Record<string, string> = {
  receiverQueueSizeAcrossPartitions: 'the receiver queue is per partition (receiverQueueSize)',
  readCompacted: 'Strata has no topic compaction yet',
  privateKeyPath: 'Strata has no end-to-end encryption',
  cryptoKeyReader: 'Strata has no end-to-end encryption',
  cryptoFailureAction: 'Strata has no end-to-end encryption',
  maxPendingChunkedMessage: 'Strata does not chunk messages yet',
  autoAckOldestChunkedMessageOnQueueFull: 'Strata does not chunk messages yet',
  schema: 'Strata has no schema registry yet',
  replicateSubscriptionState: 'Strata does not replicate subscriptions yet',
};

/** The shortest negative-ack redelivery delay (pulsar-client's). */
export const MIN_NACK_DELAY_MS = 100;

export const CONSUMER_LIMITS = { receiverQueueSize: 100_000, maxRedeliverCount: 1_000_000, batchReceiveMaxNumMessages: 100_000 };

export interface CompiledConsumerConfig<TConsumer> {
  topics: string[];
  pattern: RegExp | undefined;
  patternNamespace: string | undefined;
  subscription: string;
  type: 'EXCLUSIVE_SUB' | 'SHARED_SUB' | 'FAILOVER_SUB' | 'KEY_SHARED_SUB';
  initialPosition: 'LATEST' | 'EARLIEST';
  ackTimeoutMs: number;
  nAckRedeliverTimeoutMs: number;
  batchIndexAck: boolean;
  receiverQueueSize: number;
  consumerName: string;
  properties: Record<string, string>;
  listener: ConsumerOptions<TConsumer>['listener'];
  deadLetter: { topic: string; maxRedeliverCount: number; initialSubscriptionName: string | undefined } | undefined;
  /** enableRetry: the retry letter topic (also among `topics`) and how often a message may be reconsumed. */
  retry: { topic: string; maxReconsumeTimes: number } | undefined;
  batch: { maxNumMessages: number; maxNumBytes: number; timeoutMs: number };
  keyShared: { mode: string; ranges: { start: number; end: number }[]; allowOutOfOrderDelivery: boolean } | undefined;
  patternAutoDiscoveryPeriodMs: number;
  ackReceipt: boolean;
}

function int(v: unknown, key: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw configError(`${key} must be an integer in [${min}, ${max}], got ${String(v)}`);
  return v;
}

function bool(v: unknown, key: string): boolean {
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw configError(`${key} must be a boolean, got ${String(v)}`);
  return v;
}

function pick<T extends string>(v: unknown, key: string, allowed: readonly T[], def: T): T {
  if (v === undefined) return def;
  if (!allowed.includes(v as T)) throw configError(`${key} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got '${String(v)}'`);
  return v as T;
}

function checkKeys(obj: unknown, where: string, allowed: string[]): void {
  if (obj === undefined) return;
  if (typeof obj !== 'object' || obj === null) throw configError(`${where} must be an object`);
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw unsupportedOption(where, k, 'unknown option');
}

/** Validates and fills defaults once; unknown or unsupported options are an error, never ignored. */
export function compileConsumerConfig<TConsumer>(config: ConsumerOptions<TConsumer>): CompiledConsumerConfig<TConsumer> {
  if (typeof config !== 'object' || config === null) throw configError('Consumer config must be an object');
  const c = config as unknown as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (c[key] === undefined || SUPPORTED_CONSUMER_OPTIONS.has(key)) continue;
    throw unsupportedOption('Consumer', key, KNOWN_UNSUPPORTED[key] ?? 'unknown option');
  }
  // pulsar-client's words for a missing or mistyped topic, topics or topicsPattern.
  const noTopic = 'Topic, topics or topicsPattern is required and must be specified as a string when creating consumer';
  const given = [config.topic !== undefined, config.topics !== undefined, config.topicsPattern !== undefined].filter(Boolean).length;
  if (given === 0) throw configError(noTopic);
  if (given > 1) throw configError('Exactly one of topic, topics and topicsPattern is required');
  if (config.topic !== undefined && (typeof config.topic !== 'string' || config.topic === '')) throw configError(noTopic);
  if (config.topics !== undefined && (!Array.isArray(config.topics) || config.topics.length === 0 || config.topics.some((t) => typeof t !== 'string' || t === ''))) throw configError(noTopic);
  if (config.topicsPattern !== undefined && (typeof config.topicsPattern !== 'string' || config.topicsPattern === '')) throw configError(noTopic);
  if (typeof config.subscription !== 'string' || config.subscription === '') throw configError('Subscription is required and must be specified as a string when creating consumer');
  let topics: string[] = [];
  let pattern: RegExp | undefined;
  let patternNamespace: string | undefined;
  if (config.topic !== undefined) topics = [fullTopicName(config.topic)];
  if (config.topics !== undefined) {
    topics = [...new Set(config.topics.map(fullTopicName))];
  }
  if (config.topicsPattern !== undefined) {
    const [givenDomain, rest] = config.topicsPattern.includes('://') ? config.topicsPattern.split('://', 2) as [string, string] : [undefined, config.topicsPattern];
    if (givenDomain !== undefined && givenDomain !== 'persistent' && givenDomain !== 'non-persistent') throw configError(`Invalid topic domain in topicsPattern '${config.topicsPattern}'`);
    const local = rest.split('/').length === 3 ? rest : `public/default/${rest}`;
    const mode = pick(c.regexSubscriptionMode, 'regexSubscriptionMode', ['PersistentOnly', 'NonPersistentOnly', 'AllTopics'] as const, givenDomain === 'non-persistent' ? 'NonPersistentOnly' : 'PersistentOnly');
    const domains = { PersistentOnly: 'persistent', NonPersistentOnly: 'non-persistent', AllTopics: '(?:persistent|non-persistent)' }[mode];
    patternNamespace = namespaceOf(`persistent://${local}`);
    try {
      pattern = new RegExp(`^${domains}://(?:${local})$`);
    } catch (err) {
      throw new ClientError(ClientErrorCode.INVALID_CONFIGURATION, `topicsPattern is not a valid regular expression: ${String(err)}`);
    }
  }
  const type = pick(c.subscriptionType, 'subscriptionType', ['Exclusive', 'Shared', 'KeyShared', 'Failover'] as const, 'Exclusive');
  const ackTimeoutMs = int(c.ackTimeoutMs, 'ackTimeoutMs', 0, 0, 24 * 3600_000);
  if (ackTimeoutMs > 0 && ackTimeoutMs < 10_000) throw configError('Ack timeout should be 0 or greater than or equal to 10000');
  checkKeys(c.deadLetterPolicy, 'deadLetterPolicy', ['deadLetterTopic', 'maxRedeliverCount', 'initialSubscriptionName', 'retryLetterTopic']);
  checkKeys(c.batchReceivePolicy, 'batchReceivePolicy', ['maxNumMessages', 'maxNumBytes', 'timeoutMs']);
  checkKeys(c.keySharedPolicy, 'keySharedPolicy', ['keyShareMode', 'allowOutOfOrderDelivery', 'stickyRanges']);
  if (config.enableRetry !== undefined && typeof config.enableRetry !== 'boolean') throw configError('enableRetry must be a boolean');
  const retryOn = config.enableRetry === true;
  if (retryOn && pattern) throw configError('enableRetry needs topic or topics, not topicsPattern');
  // The retry topic is part of what the consumer reads; a dead-letter topic comes with retries.
  const dlq = config.deadLetterPolicy ?? (retryOn ? {} : undefined);
  if (dlq && topics.length !== 1 && !dlq.deadLetterTopic) throw configError('deadLetterPolicy.deadLetterTopic is required when subscribing to several topics');
  if (retryOn && topics.length !== 1 && !dlq?.retryLetterTopic) throw configError('deadLetterPolicy.retryLetterTopic is required when subscribing to several topics with enableRetry');
  const retryTopic = retryOn ? (dlq?.retryLetterTopic ? fullTopicName(dlq.retryLetterTopic) : `${topics[0]}-${config.subscription}-RETRY`) : undefined;
  if (dlq?.retryLetterTopic !== undefined && !retryOn) throw configError('deadLetterPolicy.retryLetterTopic needs enableRetry');
  const ks = config.keySharedPolicy;
  if (ks && type !== 'KeyShared') throw configError("keySharedPolicy needs subscriptionType 'KeyShared'");
  const ksMode = pick(ks?.keyShareMode, 'keySharedPolicy.keyShareMode', ['AutoSplit', 'Sticky'] as const, 'AutoSplit');
  const ranges = ks?.stickyRanges ?? [];
  for (const r of ranges) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 0 || r.end > 65535 || r.start > r.end) throw configError('stickyRanges must be ranges within [0, 65535] with start <= end');
  }
  if (ksMode === 'Sticky' && ranges.length === 0) throw configError("keyShareMode 'Sticky' needs stickyRanges");
  if (config.listener !== undefined && typeof config.listener !== 'function') throw configError('listener must be a function');
  if (config.batchIndexAckEnabled !== undefined && typeof config.batchIndexAckEnabled !== 'boolean') throw configError('batchIndexAckEnabled must be a boolean');
  if (typeof c.nAckRedeliverTimeoutMs === 'number' && c.nAckRedeliverTimeoutMs < 0) throw configError('NAck timeout should be greater than or equal to zero');
  const nAckTimeout = int(c.nAckRedeliverTimeoutMs, 'nAckRedeliverTimeoutMs', 60_000, 0, 24 * 3600_000);
  const batchPolicy = config.batchReceivePolicy;
  // As pulsar-client: a limit <= 0 is no limit, and at least one of the three must be set.
  if (batchPolicy && [batchPolicy.maxNumMessages, batchPolicy.maxNumBytes, batchPolicy.timeoutMs].every((v) => typeof v === 'number' && v <= 0)) {
    throw configError('At least one of maxNumMessages, maxNumBytes and timeoutMs must be specified.');
  }
  const batchMax = int(config.batchReceivePolicy?.maxNumMessages, 'batchReceivePolicy.maxNumMessages', 100, -1, CONSUMER_LIMITS.batchReceiveMaxNumMessages);
  const maxRedeliverCount = dlq ? int(dlq.maxRedeliverCount, 'deadLetterPolicy.maxRedeliverCount', 16, 0, CONSUMER_LIMITS.maxRedeliverCount) : 0;
  return {
    topics: retryTopic && !topics.includes(retryTopic) ? [...topics, retryTopic] : topics,
    pattern,
    patternNamespace,
    subscription: config.subscription,
    type: ({ Exclusive: 'EXCLUSIVE_SUB', Shared: 'SHARED_SUB', Failover: 'FAILOVER_SUB', KeyShared: 'KEY_SHARED_SUB' } as const)[type],
    initialPosition: pick(c.subscriptionInitialPosition, 'subscriptionInitialPosition', ['Latest', 'Earliest'] as const, 'Latest') === 'Earliest' ? 'EARLIEST' : 'LATEST',
    ackTimeoutMs,
    // As pulsar-client, whose C++ core raises a shorter delay to 100 ms (so a nack never comes straight back).
    nAckRedeliverTimeoutMs: Math.max(MIN_NACK_DELAY_MS, nAckTimeout),
    batchIndexAck: config.batchIndexAckEnabled === true,
    receiverQueueSize: int(c.receiverQueueSize, 'receiverQueueSize', 1000, 1, CONSUMER_LIMITS.receiverQueueSize),
    consumerName: typeof config.consumerName === 'string' ? config.consumerName : '',
    properties: checkStringMap(c.properties, 'properties'),
    listener: config.listener,
    deadLetter: dlq ? {
      topic: dlq.deadLetterTopic ? fullTopicName(dlq.deadLetterTopic) : `${topics[0]}-${config.subscription}-DLQ`,
      maxRedeliverCount,
      initialSubscriptionName: dlq.initialSubscriptionName || undefined,
    } : undefined,
    retry: retryTopic ? { topic: retryTopic, maxReconsumeTimes: maxRedeliverCount } : undefined,
    batch: {
      maxNumMessages: batchMax <= 0 ? CONSUMER_LIMITS.batchReceiveMaxNumMessages : batchMax,
      maxNumBytes: int(config.batchReceivePolicy?.maxNumBytes, 'batchReceivePolicy.maxNumBytes', 10 * 1024 * 1024, -1, 1024 * 1024 * 1024),
      timeoutMs: Math.max(0, int(config.batchReceivePolicy?.timeoutMs, 'batchReceivePolicy.timeoutMs', 100, -1, 3600_000)),
    },
    keyShared: type === 'KeyShared' ? {
      mode: ksMode === 'Sticky' ? 'STICKY' : 'AUTO_SPLIT',
      ranges: ranges.map((r) => ({ start: r.start, end: r.end })),
      allowOutOfOrderDelivery: ks?.allowOutOfOrderDelivery ?? false,
    } : undefined,
    patternAutoDiscoveryPeriodMs: int(c.patternAutoDiscoveryPeriodMs, 'patternAutoDiscoveryPeriodMs', 60_000, 100, 24 * 3600_000),
    ackReceipt: bool(c.ackReceiptEnabled, 'ackReceiptEnabled'),
  };
}
