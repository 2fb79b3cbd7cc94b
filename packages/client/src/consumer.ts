import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { decompress } from './compression.js';
import type { ClientContext } from './context.js';
import {
  abortError, ClientError, ClientErrorCode, configError, fromGrpcError, fromStreamError, operationError, unsupportedOption,
} from './errors.js';
import type { ConsumerCommand } from './generated/strata/broker/v1/ConsumerCommand.js';
import type { ConsumerEvent__Output } from './generated/strata/broker/v1/ConsumerEvent.js';
import type { DeliveredEntry__Output } from './generated/strata/broker/v1/DeliveredEntry.js';
import { unary } from './connection.js';
import type { Logger } from './logger.js';
import { compareMessageIds, Message, MessageId } from './message.js';
import { checkStringMap, type Producer, type ProducerConfig } from './producer.js';
import { decodeMessageBatch } from './protocol.js';
import { fullTopicName, namespaceOf, partitionTopicName } from './topic.js';
import { Backoff, MessageWaiters, PendingRequests, Queue, reconnectLoop, sleep } from './util.js';

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

/** pulsar-client's ConsumerConfig, restricted to what Strata supports (others are rejected). */
export interface ConsumerConfig {
  topic?: string;
  topics?: string[];
  topicsPattern?: string;
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
  listener?: (message: Message, consumer: Consumer) => void | Promise<void>;
  deadLetterPolicy?: DeadLetterPolicy;
  batchReceivePolicy?: ConsumerBatchReceivePolicy;
  keySharedPolicy?: KeySharedPolicy;
  /** Strata extension: how often topicsPattern is re-listed. Default 60000. */
  patternAutoDiscoveryPeriodMs?: number;
}

/** Per-call options (a Strata extension). */
export interface ReceiveOptions {
  signal?: AbortSignal;
}

const SUPPORTED_CONSUMER_OPTIONS = new Set([
  'topic', 'topics', 'topicsPattern', 'subscription', 'subscriptionType', 'subscriptionInitialPosition', 'ackTimeoutMs',
  'nAckRedeliverTimeoutMs', 'receiverQueueSize', 'consumerName', 'properties', 'listener', 'deadLetterPolicy',
  'batchReceivePolicy', 'keySharedPolicy', 'patternAutoDiscoveryPeriodMs',
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
  batchIndexAckEnabled: 'acknowledgements of batched messages are tracked by the client, per entry',
  regexSubscriptionMode: 'topicsPattern matches persistent topics only',
  replicateSubscriptionState: 'Strata does not replicate subscriptions yet',
};

export const CONSUMER_LIMITS = { receiverQueueSize: 100_000, maxRedeliverCount: 1_000_000, batchReceiveMaxNumMessages: 100_000 };

export interface CompiledConsumerConfig {
  topics: string[];
  pattern: RegExp | undefined;
  patternNamespace: string | undefined;
  subscription: string;
  type: 'EXCLUSIVE_SUB' | 'SHARED_SUB' | 'FAILOVER_SUB' | 'KEY_SHARED_SUB';
  initialPosition: 'LATEST' | 'EARLIEST';
  ackTimeoutMs: number;
  nAckRedeliverTimeoutMs: number;
  receiverQueueSize: number;
  consumerName: string;
  properties: Record<string, string>;
  listener: ConsumerConfig['listener'];
  deadLetter: { topic: string; maxRedeliverCount: number; initialSubscriptionName: string | undefined } | undefined;
  batch: { maxNumMessages: number; maxNumBytes: number; timeoutMs: number };
  keyShared: { mode: string; ranges: { start: number; end: number }[]; allowOutOfOrderDelivery: boolean } | undefined;
  patternAutoDiscoveryPeriodMs: number;
}

function int(v: unknown, key: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw configError(`${key} must be an integer in [${min}, ${max}], got ${String(v)}`);
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
export function compileConsumerConfig(config: ConsumerConfig): CompiledConsumerConfig {
  if (typeof config !== 'object' || config === null) throw configError('Consumer config must be an object');
  const c = config as unknown as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (c[key] === undefined || SUPPORTED_CONSUMER_OPTIONS.has(key)) continue;
    throw unsupportedOption('Consumer', key, KNOWN_UNSUPPORTED[key] ?? 'unknown option');
  }
  const given = [config.topic !== undefined, config.topics !== undefined, config.topicsPattern !== undefined].filter(Boolean).length;
  if (given !== 1) throw configError('Exactly one of topic, topics and topicsPattern is required');
  if (typeof config.subscription !== 'string' || config.subscription === '') throw configError('Subscription is required and must be specified as a string');
  let topics: string[] = [];
  let pattern: RegExp | undefined;
  let patternNamespace: string | undefined;
  if (config.topic !== undefined) topics = [fullTopicName(config.topic)];
  if (config.topics !== undefined) {
    if (!Array.isArray(config.topics) || config.topics.length === 0) throw configError('topics must be a non-empty array of topic names');
    topics = [...new Set(config.topics.map(fullTopicName))];
  }
  if (config.topicsPattern !== undefined) {
    if (typeof config.topicsPattern !== 'string' || config.topicsPattern === '') throw configError('topicsPattern must be a non-empty string');
    const full = config.topicsPattern.includes('://') ? config.topicsPattern
      : config.topicsPattern.split('/').length === 3 ? `persistent://${config.topicsPattern}` : `persistent://public/default/${config.topicsPattern}`;
    if (!full.startsWith('persistent://')) throw unsupportedOption('Consumer', 'topicsPattern', 'only persistent:// topics can be matched');
    patternNamespace = namespaceOf(full);
    try {
      pattern = new RegExp(`^${full}$`);
    } catch (err) {
      throw new ClientError(ClientErrorCode.INVALID_CONFIGURATION, `topicsPattern is not a valid regular expression: ${String(err)}`);
    }
  }
  const type = pick(c.subscriptionType, 'subscriptionType', ['Exclusive', 'Shared', 'KeyShared', 'Failover'] as const, 'Exclusive');
  const ackTimeoutMs = int(c.ackTimeoutMs, 'ackTimeoutMs', 0, 0, 24 * 3600_000);
  if (ackTimeoutMs > 0 && ackTimeoutMs < 10_000) throw configError('Ack timeout should be 0 or greater than or equal to 10000');
  checkKeys(c.deadLetterPolicy, 'deadLetterPolicy', ['deadLetterTopic', 'maxRedeliverCount', 'initialSubscriptionName']);
  checkKeys(c.batchReceivePolicy, 'batchReceivePolicy', ['maxNumMessages', 'maxNumBytes', 'timeoutMs']);
  checkKeys(c.keySharedPolicy, 'keySharedPolicy', ['keyShareMode', 'allowOutOfOrderDelivery', 'stickyRanges']);
  const dlq = config.deadLetterPolicy;
  if (dlq && topics.length !== 1 && !dlq.deadLetterTopic) throw configError('deadLetterPolicy.deadLetterTopic is required when subscribing to several topics');
  const ks = config.keySharedPolicy;
  if (ks && type !== 'KeyShared') throw configError("keySharedPolicy needs subscriptionType 'KeyShared'");
  const ksMode = pick(ks?.keyShareMode, 'keySharedPolicy.keyShareMode', ['AutoSplit', 'Sticky'] as const, 'AutoSplit');
  const ranges = ks?.stickyRanges ?? [];
  for (const r of ranges) {
    if (!Number.isInteger(r.start) || !Number.isInteger(r.end) || r.start < 0 || r.end > 65535 || r.start > r.end) throw configError('stickyRanges must be ranges within [0, 65535] with start <= end');
  }
  if (ksMode === 'Sticky' && ranges.length === 0) throw configError("keyShareMode 'Sticky' needs stickyRanges");
  if (config.listener !== undefined && typeof config.listener !== 'function') throw configError('listener must be a function');
  const batchMax = int(config.batchReceivePolicy?.maxNumMessages, 'batchReceivePolicy.maxNumMessages', 100, -1, CONSUMER_LIMITS.batchReceiveMaxNumMessages);
  return {
    topics,
    pattern,
    patternNamespace,
    subscription: config.subscription,
    type: ({ Exclusive: 'EXCLUSIVE_SUB', Shared: 'SHARED_SUB', Failover: 'FAILOVER_SUB', KeyShared: 'KEY_SHARED_SUB' } as const)[type],
    initialPosition: pick(c.subscriptionInitialPosition, 'subscriptionInitialPosition', ['Latest', 'Earliest'] as const, 'Latest') === 'Earliest' ? 'EARLIEST' : 'LATEST',
    ackTimeoutMs,
    nAckRedeliverTimeoutMs: int(c.nAckRedeliverTimeoutMs, 'nAckRedeliverTimeoutMs', 60_000, 0, 24 * 3600_000),
    receiverQueueSize: int(c.receiverQueueSize, 'receiverQueueSize', 1000, 1, CONSUMER_LIMITS.receiverQueueSize),
    consumerName: typeof config.consumerName === 'string' ? config.consumerName : '',
    properties: checkStringMap(c.properties, 'properties'),
    listener: config.listener,
    deadLetter: dlq ? {
      topic: dlq.deadLetterTopic ? fullTopicName(dlq.deadLetterTopic) : `${topics[0]}-${config.subscription}-DLQ`,
      maxRedeliverCount: int(dlq.maxRedeliverCount, 'deadLetterPolicy.maxRedeliverCount', 16, 0, CONSUMER_LIMITS.maxRedeliverCount),
      initialSubscriptionName: dlq.initialSubscriptionName || undefined,
    } : undefined,
    batch: {
      maxNumMessages: batchMax <= 0 ? CONSUMER_LIMITS.batchReceiveMaxNumMessages : batchMax,
      maxNumBytes: int(config.batchReceivePolicy?.maxNumBytes, 'batchReceivePolicy.maxNumBytes', 10 * 1024 * 1024, -1, 1024 * 1024 * 1024),
      timeoutMs: int(config.batchReceivePolicy?.timeoutMs, 'batchReceivePolicy.timeoutMs', 100, 0, 3600_000),
    },
    keyShared: type === 'KeyShared' ? {
      mode: ksMode === 'Sticky' ? 'STICKY' : 'AUTO_SPLIT',
      ranges: ranges.map((r) => ({ start: r.start, end: r.end })),
      allowOutOfOrderDelivery: ks?.allowOutOfOrderDelivery ?? false,
    } : undefined,
    patternAutoDiscoveryPeriodMs: int(c.patternAutoDiscoveryPeriodMs, 'patternAutoDiscoveryPeriodMs', 60_000, 100, 24 * 3600_000),
  };
}

/** How a topic consumer subscribes: durable consumer or non-durable reader. */
export interface SubscriptionSpec {
  subscription: string;
  type: CompiledConsumerConfig['type'];
  initialPosition: 'LATEST' | 'EARLIEST';
  consumerName: string;
  durable: boolean;
  startMessageId: MessageId | undefined;
  receiverQueueSize: number;
  nAckRedeliverTimeoutMs: number;
  properties: Record<string, string>;
  keyShared: CompiledConsumerConfig['keyShared'];
  maxRedeliverCount: number | undefined;
}

/** What a TopicConsumer hands its owner (Consumer or Reader). */
export interface MessageSink {
  /** Messages of one entry, in order. */
  deliver(tc: TopicConsumer, messages: Message[]): void;
  /** The entry went over maxRedeliverCount: the owner dead-letters it, then calls tc.consumed(). */
  deadLetter(tc: TopicConsumer, messages: Message[], entry: MessageId): void;
  /** The stream was re-established: drop buffered messages of this topic consumer (they come again). */
  purge(tc: TopicConsumer): void;
}

interface DeliveryRecord {
  tc: TopicConsumer;
  remaining: number;
}
/** Which delivery (for flow control) a received message belongs to. */
const deliveries = new WeakMap<Message, DeliveryRecord>();

interface EntryAcks {
  total: number;
  acked: Set<number>;
}

interface PendingAck {
  id: { ledgerId: number; entryId: number; batchIndex: number; partition: number };
  cumulative: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

type State = 'connecting' | 'ready' | 'closing' | 'closed';

/** Batches of acknowledgements sent in one Ack command at most. */
const MAX_ACKS_PER_COMMAND = 1000;

/**
 * The consumer stream of one (partition) topic. Invariants:
 * - Permits are counted in entries: the broker may have at most receiverQueueSize entries in flight
 *   or buffered here; an entry's permit comes back once all its messages left the receiver queue.
 * - A batched entry is acknowledged to the broker only when all its messages are (`#entryAcks`).
 * - Acknowledgements not yet confirmed survive a reconnect and are sent again (acks are idempotent).
 */
export class TopicConsumer {
  readonly topic: string;
  readonly partition: number;
  readonly #ctx: ClientContext;
  readonly #spec: SubscriptionSpec;
  readonly #sink: MessageSink;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #requests: PendingRequests<ConsumerEvent__Output>;
  #state: State = 'connecting';
  #call: grpc.ClientDuplexStream<ConsumerCommand, ConsumerEvent__Output> | undefined;
  /** The broker the stream last connected to (the topic's owner then). */
  #ownerAddress: string | undefined;
  #owed = 0;
  readonly #entryAcks = new Map<string, EntryAcks>();
  #ackQueue: PendingAck[] = [];
  #ackFlushScheduled = false;
  #reconnecting = false;
  /** Aborted by close(): ends the reconnection loop's waits at once. */
  readonly #stopped = new AbortController();
  /** Last message the application took: where a reader resumes after a reconnect. */
  #lastTaken: MessageId | undefined;
  /** Where a reader seeked to (resume point until it takes a message). */
  #seekStart: MessageId | undefined;
  #closeWaiter: Promise<void> | undefined;

  constructor(ctx: ClientContext, spec: SubscriptionSpec, sink: MessageSink, topic: string, partition: number) {
    this.#ctx = ctx;
    this.#spec = spec;
    this.#sink = sink;
    this.topic = topic;
    this.partition = partition;
    this.#log = ctx.logger.child({ component: 'consumer', topic, subscription: spec.subscription });
    this.#backoff = new Backoff(ctx.initialBackoffMs, ctx.maxBackoffMs, ctx.random);
    this.#requests = new PendingRequests(ctx.operationTimeoutMs, () => new ClientError(ClientErrorCode.TIMEOUT, 'no answer from the broker'), 1024);
  }

  isConnected(): boolean {
    return this.#state === 'ready' && this.#call !== undefined;
  }

  get isClosed(): boolean {
    return this.#state === 'closed' || this.#state === 'closing';
  }

  async start(): Promise<void> {
    const deadline = this.#ctx.clock.now() + this.#ctx.operationTimeoutMs;
    for (;;) {
      try {
        await this.#connectOnce(undefined);
        return;
      } catch (err) {
        const e = fromGrpcError(err);
        if (!e.retriable || this.#ctx.clock.now() >= deadline || this.isClosed) {
          this.#state = 'closed';
          throw e;
        }
        await sleep(Math.min(this.#backoff.next(), Math.max(0, deadline - this.#ctx.clock.now())), this.#stopped.signal).catch(() => undefined);
      }
    }
  }

  async #connectOnce(redirect: string | undefined): Promise<void> {
    const address = redirect ?? (await this.#ctx.pool.lookup(this.topic));
    const conn = await this.#ctx.pool.connect(address);
    if (this.isClosed) return;
    this.#ownerAddress = address;
    const call = conn.broker.Consume();
    this.#call = call;
    call.on('data', (ev: ConsumerEvent__Output) => this.#onEvent(call, ev));
    call.on('error', (err) => this.#onStreamEnd(call, fromGrpcError(err), undefined));
    call.on('end', () => this.#onStreamEnd(call, new ClientError(ClientErrorCode.UNAVAILABLE, 'consumer stream ended'), undefined));
    // A reader resumes after the last message the application took (its entry again, if the
    // application took only part of a batch); a durable subscription resumes at its cursor.
    let start = this.#spec.startMessageId;
    let startInclusive = false;
    if (!this.#spec.durable && this.#lastTaken) {
      start = this.#lastTaken;
      startInclusive = this.#lastTaken.batchIndex >= 0 && this.#lastTaken.batchIndex < this.#lastTaken.batchSize - 1;
    } else if (!this.#spec.durable && this.#seekStart) {
      start = this.#seekStart;
      startInclusive = true;
    }
    const { id, promise } = this.#requests.start();
    call.write({
      subscribe: {
        topic: this.topic,
        subscription: this.#spec.subscription,
        type: this.#spec.type,
        initialPosition: this.#spec.initialPosition,
        consumerName: this.#spec.consumerName,
        durable: this.#spec.durable,
        startMessageId: start ? { ledgerId: start.ledgerId, entryId: start.entryId, batchIndex: -1, partition: this.partition } : null,
        startInclusive,
        keySharedPolicy: this.#spec.keyShared ?? null,
        metadata: this.#spec.properties,
        requestId: id,
        negativeAckRedeliveryDelayMs: this.#spec.nAckRedeliverTimeoutMs,
      },
    });
    try {
      await promise;
    } catch (err) {
      if (this.#call === call) this.#call = undefined;
      call.cancel();
      throw err;
    }
    if (this.#call !== call) throw new ClientError(ClientErrorCode.UNAVAILABLE, 'consumer stream ended while subscribing');
    this.#sink.purge(this);
    this.#owed = 0;
    this.#state = 'ready';
    this.#backoff.reset();
    call.write({ flow: { permits: this.#spec.receiverQueueSize } });
    this.#log.info({ broker: conn.address }, 'consumer subscribed');
    if (this.#ackQueue.length > 0) this.#scheduleAckFlush();
  }

  #onEvent(call: grpc.ClientDuplexStream<ConsumerCommand, ConsumerEvent__Output>, ev: ConsumerEvent__Output): void {
    if (call !== this.#call) return;
    switch (ev.event) {
      case 'subscribed':
        this.#requests.resolve(ev.subscribed!.requestId, ev);
        break;
      case 'success':
        this.#requests.resolve(ev.success!.requestId, ev);
        break;
      case 'error':
        this.#requests.reject(ev.error!.requestId, fromStreamError(ev.error!));
        break;
      case 'delivery':
        for (const entry of ev.delivery!.entries) this.#onEntry(entry);
        break;
      case 'closed':
        this.#log.info({ reason: ev.closed!.reason, redirect: ev.closed!.redirectBrokerUrl }, 'broker closed the consumer');
        this.#onStreamEnd(call, new ClientError(ClientErrorCode.SERVICE_NOT_READY, ev.closed!.reason || 'closed by the broker'), ev.closed!.redirectBrokerUrl || undefined);
        break;
      default:
        break;
    }
  }

  #onEntry(entry: DeliveredEntry__Output): void {
    const wireId = entry.messageId!;
    const meta = entry.envelope?.metadata;
    const entryId = new MessageId(wireId.ledgerId, wireId.entryId, -1, this.partition, 1, this.topic);
    if (!meta || !entry.envelope) {
      this.#log.error({ entry: entryId.toString() }, 'entry without envelope; skipping');
      this.consumed();
      return;
    }
    let singles;
    try {
      const raw = decompress(meta.compression, Buffer.from(entry.envelope.batch), meta.uncompressedSize);
      singles = decodeMessageBatch(raw);
    } catch (err) {
      this.#log.error({ err, entry: entryId.toString() }, 'cannot decode entry; skipping it');
      this.consumed();
      return;
    }
    const n = singles.length;
    const messages = singles.map((s, i) => new Message({
      topicName: this.topic,
      data: Buffer.from(s.payload),
      properties: s.properties,
      messageId: new MessageId(wireId.ledgerId, wireId.entryId, n > 1 ? i : -1, this.partition, n, this.topic),
      publishTimestamp: meta.publishTime,
      eventTimestamp: s.eventTime,
      redeliveryCount: entry.redeliveryCount,
      partitionKey: s.partitionKey,
      orderingKey: Buffer.from(s.orderingKey).toString('utf8'),
      producerName: meta.producerName,
      replicatedFrom: meta.replicatedFrom,
      sequenceId: s.sequenceId,
      size: s.payload.length,
    }));
    // A reader that resumed inside a batch skips what the application already has.
    const taken = this.#lastTaken;
    const fresh = !this.#spec.durable && taken && taken.ledgerId === entryId.ledgerId && taken.entryId === entryId.entryId
      ? messages.filter((m) => m.getMessageId().batchIndex > taken.batchIndex)
      : messages;
    if (fresh.length === 0) {
      this.consumed();
      return;
    }
    if (this.#spec.maxRedeliverCount !== undefined && entry.redeliveryCount > this.#spec.maxRedeliverCount) {
      this.#sink.deadLetter(this, messages, entryId);
      return;
    }
    if (n > 1 && !this.#entryAcks.has(entryKey(entryId))) this.#entryAcks.set(entryKey(entryId), { total: n, acked: new Set() });
    const record: DeliveryRecord = { tc: this, remaining: fresh.length };
    for (const m of fresh) deliveries.set(m, record);
    this.#sink.deliver(this, fresh);
  }

  /** The application took this message (readers resume after it). */
  taken(id: MessageId): void {
    this.#lastTaken = id;
  }

  /** One entry left the receiver queue (or was dealt with otherwise): its permit comes back. */
  consumed(): void {
    this.#owed++;
    if (this.#owed >= Math.max(1, Math.floor(this.#spec.receiverQueueSize / 2)) && this.isConnected()) {
      this.#call!.write({ flow: { permits: this.#owed } });
      this.#owed = 0;
    }
  }

  #onStreamEnd(call: grpc.ClientDuplexStream<ConsumerCommand, ConsumerEvent__Output>, err: ClientError, redirect: string | undefined): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    call.cancel();
    this.#requests.rejectAll(err);
    if (this.isClosed) return;
    if (this.#state === 'ready') {
      this.#state = 'connecting';
      this.#log.warn({ err, redirect }, 'consumer disconnected');
      void this.#reconnect(redirect);
    }
  }

  async #reconnect(redirect: string | undefined): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      await reconnectLoop({
        redirect,
        backoff: this.#backoff,
        signal: this.#stopped.signal,
        stillConnecting: () => this.#state === 'connecting',
        connectOnce: (to) => this.#connectOnce(to),
        onFailure: (err, attempt) => this.#log.warn({ err, attempt }, 'consumer reconnect failed'),
      });
    } finally {
      this.#reconnecting = false;
    }
  }

  /** Individual acknowledgement; resolves once the broker confirmed the entry's ack (or locally for a partial batch). */
  acknowledge(id: MessageId): Promise<void> {
    const key = entryKey(id);
    const tracked = this.#entryAcks.get(key);
    if (tracked && id.batchIndex >= 0) {
      tracked.acked.add(id.batchIndex);
      if (tracked.acked.size < tracked.total) return Promise.resolve();
    }
    this.#entryAcks.delete(key);
    return this.#queueAck({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition }, false);
  }

  acknowledgeCumulative(id: MessageId): Promise<void> {
    let target = { ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition };
    if (id.batchIndex >= 0 && id.batchIndex < id.batchSize - 1) {
      // Not the end of its batch: ack the entries before it, and mark this one's head locally.
      const tracked = this.#entryAcks.get(entryKey(id)) ?? { total: id.batchSize, acked: new Set<number>() };
      for (let i = 0; i <= id.batchIndex; i++) tracked.acked.add(i);
      this.#entryAcks.set(entryKey(id), tracked);
      if (id.entryId === 0) return Promise.resolve();
      target = { ...target, entryId: id.entryId - 1 };
    }
    for (const [key] of this.#entryAcks) {
      const [l, e] = key.split(':').map(Number) as [number, number];
      if (l < target.ledgerId || (l === target.ledgerId && e <= target.entryId)) this.#entryAcks.delete(key);
    }
    return this.#queueAck(target, true);
  }

  #queueAck(id: PendingAck['id'], cumulative: boolean): Promise<void> {
    if (this.isClosed) return Promise.reject(new ClientError(ClientErrorCode.ALREADY_CLOSED, 'consumer is closed'));
    return new Promise<void>((resolve, reject) => {
      this.#ackQueue.push({ id, cumulative, resolve, reject });
      this.#scheduleAckFlush();
    });
  }

  #scheduleAckFlush(): void {
    if (this.#ackFlushScheduled) return;
    this.#ackFlushScheduled = true;
    setImmediate(() => {
      this.#ackFlushScheduled = false;
      this.#flushAcks();
    });
  }

  /** Sends queued acks (grouped); on a lost connection they are queued again for the next one. */
  #flushAcks(): void {
    while (this.#ackQueue.length > 0 && this.isConnected()) {
      const first = this.#ackQueue[0]!;
      const group: PendingAck[] = [];
      while (group.length < MAX_ACKS_PER_COMMAND && this.#ackQueue.length > 0 && this.#ackQueue[0]!.cumulative === first.cumulative) {
        group.push(this.#ackQueue.shift()!);
        if (first.cumulative) break;
      }
      let req;
      try {
        req = this.#requests.start();
      } catch (err) {
        this.#ackQueue.unshift(...group);
        this.#log.warn({ err }, 'too many outstanding requests; acks wait');
        return;
      }
      this.#call!.write({ ack: { messageIds: group.map((a) => a.id), cumulative: first.cumulative, requestId: req.id } });
      req.promise.then(
        () => group.forEach((a) => a.resolve()),
        (err: unknown) => {
          const e = fromGrpcError(err);
          if (e.retriable && !this.isClosed) {
            this.#ackQueue.push(...group);
            if (this.isConnected()) this.#scheduleAckFlush();
          } else {
            group.forEach((a) => a.reject(e.withContext('Failed to acknowledge')));
          }
        },
      );
    }
  }

  negativeAcknowledge(ids: MessageId[]): void {
    if (!this.isConnected()) return; // the broker redelivers everything unacknowledged on reconnect anyway
    this.#call!.write({ nack: { messageIds: ids.map((id) => ({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition })) } });
  }

  redeliver(ids: MessageId[]): void {
    if (!this.isConnected()) return;
    this.#call!.write({ redeliver: { messageIds: ids.map((id) => ({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition })) } });
  }

  async #request(command: ConsumerCommand, op: string): Promise<void> {
    if (!this.isConnected()) throw operationError(op, this.isClosed ? ClientErrorCode.ALREADY_CLOSED : ClientErrorCode.UNAVAILABLE, 'not connected');
    const { id, promise } = this.#requests.start();
    const key = Object.keys(command)[0] as keyof ConsumerCommand;
    this.#call!.write({ [key]: { ...(command[key] as object), requestId: id } });
    try {
      await promise;
    } catch (err) {
      throw fromGrpcError(err).withContext(op);
    }
  }

  async seek(target: { messageId?: MessageId; timestamp?: number }): Promise<void> {
    const op = target.messageId ? 'Failed to seek message by id' : 'Failed to seek message by timestamp';
    await this.#request({ seek: target.messageId ? { messageId: target.messageId.toWire() } : { timestamp: target.timestamp } }, op);
    // What was buffered came from before the seek.
    this.#sink.purge(this);
    this.#lastTaken = undefined;
    this.#seekStart = target.messageId && !target.messageId.isEarliest() && !target.messageId.isLatest() ? target.messageId : undefined;
  }

  async unsubscribe(): Promise<void> {
    await this.#request({ unsubscribe: {} }, 'Failed to unsubscribe consumer');
    await this.close();
  }

  close(): Promise<void> {
    this.#closeWaiter ??= this.#close();
    return this.#closeWaiter;
  }

  async #close(): Promise<void> {
    this.#stopped.abort();
    if (this.#state === 'closed') return;
    if (this.isConnected()) {
      this.#flushAcks();
      try {
        await this.#request({ close: {} }, 'Failed to close consumer');
      } catch (err) {
        this.#log.debug({ err }, 'close request failed');
      }
    }
    this.#state = 'closed';
    const call = this.#call;
    this.#call = undefined;
    call?.end();
    call?.cancel();
    const err = new ClientError(ClientErrorCode.ALREADY_CLOSED, 'consumer is closed');
    this.#requests.rejectAll(err);
    for (const a of this.#ackQueue.splice(0)) a.reject(err);
  }

  /** The id of the last entry of the topic (ledgerId -1 if empty). */
  async lastMessageId(): Promise<MessageId> {
    // Only the topic's owner answers: ask the broker the stream is on (after a lookup if none yet).
    const conn = await this.#ctx.pool.connect(this.#ownerAddress ?? (await this.#ctx.pool.lookup(this.topic)));
    const res = await unary<{ messageId: { ledgerId: number; entryId: number } | null }>(
      (cb, opts) => conn.broker.GetLastMessageId({ topic: this.topic }, opts, cb), this.#ctx.operationTimeoutMs);
    const m = res.messageId;
    return new MessageId(m?.ledgerId ?? -1, m?.entryId ?? -1, -1, this.partition);
  }
}

function entryKey(id: MessageId): string {
  return `${id.ledgerId}:${id.entryId}`;
}

/** Marks a message as taken out of the receiver queue (permits, ack-timeout clock). */
export function takeMessage(m: Message): TopicConsumer | undefined {
  const rec = release(m);
  rec?.tc.taken(m.getMessageId());
  return rec?.tc;
}

/** Drops a buffered message without handing it out (purge): its permit share comes back too. */
export function dropMessage(m: Message): void {
  release(m);
}

function release(m: Message): DeliveryRecord | undefined {
  const rec = deliveries.get(m);
  if (!rec) return undefined;
  deliveries.delete(m);
  rec.remaining--;
  if (rec.remaining === 0) rec.tc.consumed();
  return rec;
}

/** Factories the consumer needs from its client (dead-letter producer, pattern listing). */
export interface ConsumerHost {
  createProducer(config: ProducerConfig): Promise<Producer>;
  subscribe(config: ConsumerConfig): Promise<Consumer>;
  listTopics(namespace: string): Promise<string[]>;
  partitions(topic: string): Promise<number>;
}

/**
 * A subscription on one or more topics (each partition its own TopicConsumer), with one receiver
 * queue the application reads with receive(), batchReceive(), a listener or `for await`.
 */
export class Consumer implements MessageSink, AsyncIterable<Message> {
  readonly #ctx: ClientContext;
  readonly #cfg: CompiledConsumerConfig;
  readonly #host: ConsumerHost;
  readonly #log: Logger;
  readonly #onClose: (c: Consumer) => void;
  readonly #byTopic = new Map<string, TopicConsumer>();
  /** Base topic -> its topic consumers (one per partition). */
  readonly #groups = new Map<string, TopicConsumer[]>();
  readonly #queue = new Queue<Message>();
  readonly #waiters = new MessageWaiters<Message>();
  #notify: Array<() => void> = [];
  #closed = false;
  /** Entry key -> when it was handed out, for ackTimeoutMs. */
  readonly #unackedSince = new Map<string, { at: number; id: MessageId; tc: TopicConsumer }>();
  #ackTimer: NodeJS.Timeout | undefined;
  #patternTimer: NodeJS.Timeout | undefined;
  #dlqProducer: Promise<Producer> | undefined;
  #dlqChain: Promise<void> = Promise.resolve();
  #listenerLoop: Promise<void> | undefined;

  private constructor(ctx: ClientContext, cfg: CompiledConsumerConfig, host: ConsumerHost, onClose: (c: Consumer) => void) {
    this.#ctx = ctx;
    this.#cfg = cfg;
    this.#host = host;
    this.#onClose = onClose;
    this.#log = ctx.logger.child({ component: 'consumer', subscription: cfg.subscription });
  }

  /** @internal use Client.subscribe. */
  static async create(ctx: ClientContext, config: ConsumerConfig, host: ConsumerHost, onClose: (c: Consumer) => void): Promise<Consumer> {
    const cfg = compileConsumerConfig(config);
    const consumer = new Consumer(ctx, cfg, host, onClose);
    try {
      const topics = cfg.pattern ? await consumer.#matchPattern() : cfg.topics;
      await Promise.all(topics.map((t) => consumer.#addTopic(t)));
    } catch (err) {
      await consumer.#closeAll();
      throw fromGrpcError(err).withContext('Failed to create consumer');
    }
    consumer.#startTimers();
    if (cfg.listener) consumer.#listenerLoop = consumer.#runListener(cfg.listener);
    return consumer;
  }

  #spec(): SubscriptionSpec {
    return {
      subscription: this.#cfg.subscription,
      type: this.#cfg.type,
      initialPosition: this.#cfg.initialPosition,
      consumerName: this.#cfg.consumerName,
      durable: true,
      startMessageId: undefined,
      receiverQueueSize: this.#cfg.receiverQueueSize,
      nAckRedeliverTimeoutMs: this.#cfg.nAckRedeliverTimeoutMs,
      properties: this.#cfg.properties,
      keyShared: this.#cfg.keyShared,
      maxRedeliverCount: this.#cfg.deadLetter?.maxRedeliverCount,
    };
  }

  async #addTopic(topic: string): Promise<void> {
    if (this.#groups.has(topic)) return;
    const partitions = await this.#host.partitions(topic);
    const spec = this.#spec();
    const tcs = partitions === 0
      ? [new TopicConsumer(this.#ctx, spec, this, topic, -1)]
      : Array.from({ length: partitions }, (_, i) => new TopicConsumer(this.#ctx, spec, this, partitionTopicName(topic, i), i));
    this.#groups.set(topic, tcs);
    for (const tc of tcs) this.#byTopic.set(tc.topic, tc);
    const results = await Promise.allSettled(tcs.map((tc) => tc.start()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    // Closed meanwhile (a pattern refresh racing close()): close() did not see these.
    if (this.#closed) await this.#removeTopic(topic);
  }

  async #removeTopic(topic: string): Promise<void> {
    const tcs = this.#groups.get(topic) ?? [];
    this.#groups.delete(topic);
    for (const tc of tcs) this.#byTopic.delete(tc.topic);
    await Promise.allSettled(tcs.map(async (tc) => {
      await tc.close();
      this.purge(tc);
    }));
  }

  async #matchPattern(): Promise<string[]> {
    const names = await this.#host.listTopics(this.#cfg.patternNamespace!);
    const bases = new Set(names.map((n) => n.replace(/-partition-\d+$/, '')));
    return [...bases].filter((t) => this.#cfg.pattern!.test(t)).sort();
  }

  #startTimers(): void {
    if (this.#cfg.ackTimeoutMs > 0) {
      const every = Math.max(100, Math.min(1000, Math.floor(this.#cfg.ackTimeoutMs / 10)));
      this.#ackTimer = setInterval(() => this.#redeliverExpired(), every);
      this.#ackTimer.unref?.();
    }
    if (this.#cfg.pattern) {
      let running = false; // one refresh at a time, however slow the broker answers
      this.#patternTimer = setInterval(() => {
        if (running) return;
        running = true;
        this.#refreshPattern()
          .catch((err: unknown) => this.#log.warn({ err }, 'topicsPattern refresh failed'))
          .finally(() => { running = false; });
      }, this.#cfg.patternAutoDiscoveryPeriodMs);
      this.#patternTimer.unref?.();
    }
  }

  async #refreshPattern(): Promise<void> {
    if (this.#closed) return;
    const want = new Set(await this.#matchPattern());
    for (const t of want) {
      if (!this.#groups.has(t)) {
        this.#log.info({ topic: t }, 'topicsPattern: new topic');
        await this.#addTopic(t).catch((err: unknown) => {
          this.#log.warn({ err, topic: t }, 'cannot subscribe to a new topic matching topicsPattern');
          return this.#removeTopic(t);
        });
      }
    }
    for (const t of [...this.#groups.keys()]) if (!want.has(t)) await this.#removeTopic(t);
  }

  /** The base topics this consumer is subscribed to (Strata extension). */
  getTopics(): string[] {
    return [...this.#groups.keys()];
  }

  // ---- MessageSink ----

  deliver(_tc: TopicConsumer, messages: Message[]): void {
    for (const m of messages) {
      const w = this.#waiters.shift();
      if (w) {
        this.#handOut(m);
        w.resolve(m);
      } else {
        this.#queue.push(m);
      }
    }
    for (const n of this.#notify.splice(0)) n();
  }

  deadLetter(tc: TopicConsumer, messages: Message[], entry: MessageId): void {
    const dlq = this.#cfg.deadLetter!;
    this.#dlqChain = this.#dlqChain.then(async () => {
      try {
        if (!this.#dlqProducer) {
          this.#dlqProducer = (async () => {
            if (dlq.initialSubscriptionName) {
              const sub = await this.#host.subscribe({ topic: dlq.topic, subscription: dlq.initialSubscriptionName, subscriptionInitialPosition: 'Earliest' });
              await sub.close();
            }
            return this.#host.createProducer({ topic: dlq.topic, batchingEnabled: false, sendTimeoutMs: 0 });
          })();
          this.#dlqProducer.catch(() => { this.#dlqProducer = undefined; });
        }
        const producer = await this.#dlqProducer;
        await Promise.all(messages.map((m) => producer.send({
          data: m.getData(),
          properties: { ...m.getProperties(), REAL_TOPIC: m.getTopicName(), ORIGIN_MESSAGE_ID: m.getMessageId().toString() },
          ...(m.getPartitionKey() ? { partitionKey: m.getPartitionKey() } : {}),
          ...(m.getEventTimestamp() ? { eventTimestamp: m.getEventTimestamp() } : {}),
        })));
        await tc.acknowledge(entry);
        this.#log.info({ entry: entry.toString(), deadLetterTopic: dlq.topic }, 'message sent to the dead-letter topic');
      } catch (err) {
        // Leave it unacknowledged: it comes again and the dead-lettering is retried.
        this.#log.error({ err, entry: entry.toString() }, 'cannot dead-letter a message; it will be redelivered');
        tc.negativeAcknowledge([entry]);
      } finally {
        tc.consumed();
      }
    });
  }

  purge(tc: TopicConsumer): void {
    for (const m of this.#queue.filter((m) => m.getMessageId().topic !== tc.topic)) dropMessage(m);
    for (const [key, v] of this.#unackedSince) if (v.tc === tc) this.#unackedSince.delete(key);
  }

  // ---- receiving ----

  #handOut(m: Message): void {
    const tc = takeMessage(m);
    if (tc && this.#cfg.ackTimeoutMs > 0) {
      const id = m.getMessageId();
      const key = `${tc.topic}|${id.ledgerId}:${id.entryId}`;
      if (!this.#unackedSince.has(key)) this.#unackedSince.set(key, { at: this.#ctx.clock.now(), id, tc });
    }
  }

  #redeliverExpired(): void {
    const limit = this.#ctx.clock.now() - this.#cfg.ackTimeoutMs;
    const byTc = new Map<TopicConsumer, MessageId[]>();
    for (const [key, v] of this.#unackedSince) {
      if (v.at > limit) continue;
      this.#unackedSince.delete(key);
      byTc.set(v.tc, [...(byTc.get(v.tc) ?? []), v.id]);
    }
    for (const [tc, ids] of byTc) {
      this.#log.debug({ topic: tc.topic, count: ids.length }, 'ack timeout: asking for redelivery');
      tc.redeliver(ids);
    }
  }

  /**
   * The next message. Rejects with `Failed to receive message: TimeOut` after `timeout` ms (if given
   * and > 0), and with an abort error when `options.signal` aborts.
   */
  receive(timeout?: number, options?: ReceiveOptions): Promise<Message> {
    if (this.#cfg.listener) return Promise.reject(operationError('Failed to receive message', ClientErrorCode.INVALID_CONFIGURATION, 'this consumer has a listener'));
    return this.#receive(timeout, options?.signal);
  }

  #receive(timeout: number | undefined, signal: AbortSignal | undefined): Promise<Message> {
    const op = 'Failed to receive message';
    if (this.#closed) return Promise.reject(operationError(op, ClientErrorCode.ALREADY_CLOSED));
    if (timeout !== undefined && (typeof timeout !== 'number' || timeout < 0)) return Promise.reject(operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'timeout must be a number of milliseconds'));
    if (signal?.aborted) return Promise.reject(abortError(signal, op));
    const m = this.#queue.shift();
    if (m) {
      this.#handOut(m);
      return Promise.resolve(m);
    }
    return this.#waiters.wait(op, timeout, signal);
  }

  /**
   * Up to batchReceivePolicy.maxNumMessages messages (or maxNumBytes), waiting at most timeoutMs
   * for them to arrive; may resolve with fewer, or none.
   */
  async batchReceive(options?: ReceiveOptions): Promise<Message[]> {
    const op = 'Failed to batch receive message';
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    if (this.#cfg.listener) throw operationError(op, ClientErrorCode.INVALID_CONFIGURATION, 'this consumer has a listener');
    const { maxNumMessages, maxNumBytes, timeoutMs } = this.#cfg.batch;
    const deadline = this.#ctx.clock.now() + timeoutMs;
    const out: Message[] = [];
    let bytes = 0;
    for (;;) {
      while (out.length < maxNumMessages && (maxNumBytes <= 0 || bytes < maxNumBytes)) {
        const m = this.#queue.shift();
        if (!m) break;
        this.#handOut(m);
        out.push(m);
        bytes += m.size;
      }
      const full = out.length >= maxNumMessages || (maxNumBytes > 0 && bytes >= maxNumBytes);
      const left = deadline - this.#ctx.clock.now();
      if (full || left <= 0 || this.#closed) return out;
      if (options?.signal?.aborted) throw abortError(options.signal, op);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          options?.signal?.removeEventListener('abort', done);
          resolve();
        }
        options?.signal?.addEventListener('abort', done, { once: true });
        this.#notify.push(done);
      });
    }
  }

  async #runListener(listener: NonNullable<ConsumerConfig['listener']>): Promise<void> {
    while (!this.#closed) {
      let m: Message;
      try {
        m = await this.#receive(undefined, undefined);
      } catch {
        return; // closed
      }
      try {
        await listener(m, this);
      } catch (err) {
        this.#log.error({ err, messageId: m.getMessageId().toString() }, 'message listener threw');
      }
    }
  }

  /** `for await (const msg of consumer)`: receives until the consumer is closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    while (!this.#closed) {
      try {
        yield await this.receive();
      } catch (err) {
        if (this.#closed) return;
        throw err;
      }
    }
  }

  // ---- acknowledgement ----

  #route(id: MessageId, op: string): TopicConsumer {
    if (!(id instanceof MessageId)) throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'expected a MessageId');
    if (id.topic) {
      const tc = this.#byTopic.get(id.topic);
      if (tc) return tc;
      throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, `this consumer is not subscribed to ${id.topic}`);
    }
    if (this.#byTopic.size === 1) return [...this.#byTopic.values()][0]!;
    if (this.#groups.size === 1 && id.partition >= 0) {
      const tc = [...this.#groups.values()][0]![id.partition];
      if (tc) return tc;
    }
    throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'cannot tell which topic this message id belongs to');
  }

  #forgetTimeout(tc: TopicConsumer, id: MessageId): void {
    if (this.#unackedSince.size > 0) this.#unackedSince.delete(`${tc.topic}|${id.ledgerId}:${id.entryId}`);
  }

  async acknowledge(message: Message): Promise<null> {
    return this.#ack(message?.getMessageId?.(), 'Failed to acknowledge');
  }

  async acknowledgeId(messageId: MessageId): Promise<null> {
    return this.#ack(messageId, 'Failed to acknowledge id');
  }

  async #ack(id: MessageId | undefined, op: string): Promise<null> {
    const tc = this.#route(id as MessageId, op);
    this.#forgetTimeout(tc, id!);
    await tc.acknowledge(id!);
    return null;
  }

  async acknowledgeCumulative(message: Message): Promise<null> {
    return this.#ackCumulative(message?.getMessageId?.(), 'Failed to acknowledge cumulatively');
  }

  async acknowledgeCumulativeId(messageId: MessageId): Promise<null> {
    return this.#ackCumulative(messageId, 'Failed to acknowledge cumulatively by id');
  }

  async #ackCumulative(id: MessageId | undefined, op: string): Promise<null> {
    if (this.#cfg.type === 'SHARED_SUB' || this.#cfg.type === 'KEY_SHARED_SUB') {
      throw operationError(op, ClientErrorCode.CUMULATIVE_ACK_NOT_ALLOWED, 'not allowed on Shared and KeyShared subscriptions');
    }
    const tc = this.#route(id as MessageId, op);
    for (const [key, v] of this.#unackedSince) if (v.tc === tc && compareMessageIds(v.id, id!) <= 0) this.#unackedSince.delete(key);
    await tc.acknowledgeCumulative(id!);
    return null;
  }

  /** Asks for redelivery after nAckRedeliverTimeoutMs (the whole entry, for a batched message). */
  negativeAcknowledge(message: Message): void {
    this.negativeAcknowledgeId(message.getMessageId());
  }

  negativeAcknowledgeId(messageId: MessageId): void {
    const tc = this.#route(messageId, 'Failed to negatively acknowledge');
    this.#forgetTimeout(tc, messageId);
    tc.negativeAcknowledge([messageId]);
  }

  // ---- position ----

  async seek(messageId: MessageId): Promise<null> {
    const op = 'Failed to seek message by id';
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    const all = [...this.#byTopic.values()];
    if (all.length === 1 || messageId.isEarliest() || messageId.isLatest()) {
      await Promise.all(all.map((tc) => tc.seek({ messageId })));
    } else {
      await this.#route(messageId, op).seek({ messageId });
    }
    return null;
  }

  async seekTimestamp(timestamp: number): Promise<null> {
    if (this.#closed) throw operationError('Failed to seek message by timestamp', ClientErrorCode.ALREADY_CLOSED);
    if (!Number.isInteger(timestamp) || timestamp < 0) throw operationError('Failed to seek message by timestamp', ClientErrorCode.INVALID_ARGUMENT, 'timestamp must be ms since the epoch');
    await Promise.all([...this.#byTopic.values()].map((tc) => tc.seek({ timestamp })));
    return null;
  }

  /** True when every partition's stream is open. */
  isConnected(): boolean {
    return !this.#closed && this.#byTopic.size > 0 && [...this.#byTopic.values()].every((tc) => tc.isConnected());
  }

  async unsubscribe(): Promise<null> {
    if (this.#closed) throw operationError('Failed to unsubscribe consumer', ClientErrorCode.ALREADY_CLOSED);
    await Promise.all([...this.#byTopic.values()].map((tc) => tc.unsubscribe()));
    await this.close();
    return null;
  }

  async close(): Promise<null> {
    if (this.#closed) return null;
    await this.#closeAll();
    return null;
  }

  async #closeAll(): Promise<void> {
    this.#closed = true;
    if (this.#ackTimer) clearInterval(this.#ackTimer);
    if (this.#patternTimer) clearInterval(this.#patternTimer);
    const err = operationError('Failed to receive message', ClientErrorCode.ALREADY_CLOSED);
    this.#waiters.rejectAll(err);
    for (const n of this.#notify.splice(0)) n();
    await Promise.allSettled([...this.#byTopic.values()].map((tc) => tc.close()));
    await this.#dlqChain;
    if (this.#dlqProducer) await this.#dlqProducer.then((p) => p.close()).catch(() => undefined);
    await this.#listenerLoop;
    this.#onClose(this);
  }
}

/** A random, unique subscription name for readers. */
export function readerSubscriptionName(prefix: string | undefined): string {
  return `${prefix || 'reader'}-${randomBytes(5).toString('hex')}`;
}
