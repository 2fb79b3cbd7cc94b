import type { Clock, Logger, Random } from '@strata/runtime';
import { decodeEnvelope, encodeEnvelope } from './codec.js';
import { Consumer, SUBSCRIPTION_TYPE_PROPERTY, subscriptionTypeName, type SubscriptionType } from './consumer.js';
import {
  AlreadyExistsError, ConsumerBusyError, InvalidRequestError, NotAllowedError, NotFoundError, MessageTooLargeError, ProducerBusyError, ProducerFencedError, ServiceNotReadyError,
  TooManyRequestsError,
} from '../errors.js';
import type { BatchMetadata__Output } from '../generated/strata/broker/v1/BatchMetadata.js';
import type { MessageId } from '../generated/strata/broker/v1/MessageId.js';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import type { TopicName } from '../names.js';
import { Producer, type AccessMode, type ProducerSink, type PublishResult } from './producer.js';
import { RateMeter } from './rate.js';
import type { BrokerMetrics } from '../metrics.js';
import type { NamespacePolicies } from '../resources/namespace-resources.js';
import { RateLimiter } from '../policies/rate-limiter.js';
import type { ConsumerSink } from './consumer.js';
import { comparePositions, type Cursor, type InitialPosition, type ManagedLedger, type Position } from '../storage/index.js';
import { Subscription, type BatchIndexAck } from './subscription.js';

/** Cursor holding the dedup snapshot; names with this prefix are reserved for the broker. */
export const RESERVED_SUBSCRIPTION_PREFIX = 'strata.';
export const DEDUP_CURSOR = 'strata.dedup';
/** Producers waiting for exclusive access to one topic, at most. */
export const MAX_EXCLUSIVE_WAITERS = 100;

export interface TopicOptions {
  maxMessageBytes: number;
  readAheadEntries: number;
  readMaxBytes: number;
  maxRedeliveryPositions: number;
  defaultNackDelayMs: number;
  /** Dedup: distinct producer names remembered per topic (least recently used forgotten first). */
  maxDedupProducers: number;
  /** Dedup: snapshot the sequence ids into the dedup cursor every this many stored entries. */
  dedupSnapshotEntries: number;
  /** Prefix of generated producer names (cluster + broker instance), unique across brokers. */
  producerNamePrefix: string;
  clock: Clock;
  random: Random;
  logger: Logger;
  metrics?: BrokerMetrics;
}

export interface SubscribeOptions {
  subscription: string;
  type: SubscriptionType;
  consumerName: string;
  priority: number;
  durable: boolean;
  initialPosition: InitialPosition;
  startMessageId?: Position | InitialPosition;
  startInclusive: boolean;
  stickyRanges: Array<{ start: number; end: number }>;
  nackDelayMs: number;
  sink: ConsumerSink;
}

/** Consumers connected to a topic, over all its subscriptions (load reports and topic metrics). */
export function consumerCount(stats: TopicStats): number {
  return (stats.subscriptions ?? []).reduce((n, s) => n + (s.consumers?.length ?? 0), 0);
}

/**
 * What the gRPC streams and the admin service need of a topic; persistent and non-persistent topics
 * both provide it.
 */
export interface Topic {
  readonly name: TopicName;
  readonly persistent: boolean;
  /** Resolves when the topic is closed (unloaded, deleted, or its storage lost). */
  readonly closedSignal: AbortSignal;
  /** Its publish rate limit, if it has one (persistent topics). */
  readonly publishRate?: RateLimiter;
  addProducer(options: { name: string; accessMode: AccessMode; sink: ProducerSink; address: string }): Producer;
  /**
   * WAIT_FOR_EXCLUSIVE: resolves when the topic has no producer (FIFO among waiters, at most
   * MAX_EXCLUSIVE_WAITERS; past that TOO_MANY_REQUESTS). Rejects when `signal` aborts or the topic closes.
   */
  waitForNoProducers(signal: AbortSignal): Promise<void>;
  removeProducer(producer: Producer): void;
  /** Highest persisted sequence id of a producer name (-1: none, or dedup off). */
  lastSequenceId(producerName: string): number;
  publish(producer: Producer, metadata: BatchMetadata__Output, batch: Buffer): Promise<PublishResult>;
  subscribe(options: SubscribeOptions): Promise<{ subscription: TopicSubscription; consumer: Consumer }>;
  unsubscribe(subscription: TopicSubscription, consumer: Consumer): Promise<void>;
  lastMessageId(): MessageId;
  hasClients(): boolean;
  stats(ownerUrl: string): TopicStats;
  /** Closes producers and consumers (their streams get Closed, with the new owner when given) and releases storage. Idempotent. */
  close(reason: string, options?: { redirectBrokerUrl?: string }): Promise<void>;
  /** Deletes the topic's data (persistent) after closing it. */
  delete(): Promise<void>;
}

/** What a consumer stream holds on to: the subscription-level operations. */
export interface TopicSubscription {
  readonly name: string;
  flow(consumer: Consumer, permits: number): void;
  ack(consumer: Consumer, positions: Position[], cumulative: boolean): Promise<void>;
  ackBatchIndexes(consumer: Consumer, acks: readonly BatchIndexAck[]): Promise<void>;
  /** Resolves once the cursor state that includes these applied acks is persisted (ack receipts). */
  persistAcks(positions: Position[], cumulative: boolean): Promise<void>;
  nack(consumer: Consumer, positions: Position[]): void;
  redeliverUnacknowledged(consumer: Consumer, positions: Position[]): void;
  /** `after`: the entry after that position (pulsar-client's seek to a message id). */
  seek(target: Position | InitialPosition | { timestampMs: number } | { after: Position }): Promise<Position>;
  removeConsumer(consumer: Consumer): void;
}

let nextId = 1;

/**
 * A persistent topic: one managed ledger, its producers and its subscriptions (one per durable cursor,
 * plus non-durable readers). Deduplication (namespace policy) keeps, per producer name, the highest
 * sequence id stored; it is snapshotted into the `strata.dedup` cursor's properties and rebuilt on
 * load from that snapshot plus a scan of the entries after it.
 */
export class PersistentTopic implements Topic {
  readonly persistent = true;
  private readonly producers = new Set<Producer>();
  private readonly exclusiveWaiters: Array<() => void> = [];
  readonly subscriptions = new Map<string, Subscription>();
  private readonly closer = new AbortController();
  private readonly logger: Logger;
  private readonly rateIn: RateMeter;
  /** The namespace's publish rate limit for this topic (Pulsar's publishRate); the producer streams obey it. */
  readonly publishRate: RateLimiter;
  /** The namespace's subscriptionDispatchRate, given to each subscription's own limiter. */
  private dispatchRateLimits: { msgsPerSecond: number; bytesPerSecond: number };
  /** The namespace's resource limits (0: none), checked as producers, subscriptions and consumers come. */
  private limits: { producers: number; subscriptions: number; consumersPerSubscription: number };
  /** The namespace's delayed delivery policy: on/off, and the longest delay a producer may ask (0: any). */
  private delayed: { enabled: boolean; maxDelayMs: number };
  private dedupEnabled: boolean;
  private dedupCursor: Cursor | undefined;
  /** Dedup: highest sequence id per producer, of entries stored (persisted) and of entries sent to storage (pushed). */
  private readonly persisted = new Map<string, number>();
  private readonly pushed = new Map<string, number>();
  private entriesSinceSnapshot = 0;
  private snapshotChain: Promise<void> = Promise.resolve();
  private lastAppend: Promise<unknown> = Promise.resolve();
  private readerCount = 0;
  private closing: Promise<void> | undefined;

  constructor(
    readonly name: TopicName,
    readonly ml: ManagedLedger,
    policies: NamespacePolicies,
    private readonly options: TopicOptions,
  ) {
    this.logger = options.logger.child({ component: 'topic', topic: name.toString() });
    this.rateIn = new RateMeter(options.clock);
    this.dedupEnabled = policies.deduplicationEnabled;
    this.publishRate = new RateLimiter(policies.publishRateMsgsPerSecond ?? 0, policies.publishRateBytesPerSecond ?? 0, options.clock);
    this.dispatchRateLimits = dispatchRateOf(policies);
    this.limits = limitsOf(policies);
    this.delayed = delayedOf(policies);
  }

  get closedSignal(): AbortSignal {
    return this.closer.signal;
  }

  /** Loads subscriptions for existing cursors and the dedup state. */
  async init(): Promise<void> {
    for (const cursor of this.ml.cursors()) {
      if (cursor.name.startsWith(RESERVED_SUBSCRIPTION_PREFIX)) continue;
      this.subscriptions.set(cursor.name, this.newSubscription(cursor.name, cursor));
    }
    if (this.dedupEnabled) await this.recoverDedup();
    else if (this.ml.getCursor(DEDUP_CURSOR)) await this.ml.deleteCursor(DEDUP_CURSOR);
    this.ml.lost.addEventListener('abort', () => void this.close('storage lost: another broker took the topic'), { once: true });
  }

  addProducer(options: { name: string; accessMode: AccessMode; sink: ProducerSink; address: string }): Producer {
    this.checkOpen();
    const name = options.name || `${this.options.producerNamePrefix}-${nextId}`;
    for (const p of this.producers) {
      if (p.name === name) throw new ProducerBusyError(`producer ${name} is already connected to ${this.name}`);
    }
    const exclusive = [...this.producers].find((p) => p.accessMode !== 'SHARED');
    if (options.accessMode === 'EXCLUSIVE_WITH_FENCING') {
      for (const p of [...this.producers]) {
        this.producers.delete(p);
        p.sink.fenced(`fenced by exclusive producer ${name}`);
      }
    } else if (exclusive) {
      // As Pulsar: losing a race for exclusive access is ProducerFenced; a name in use is ProducerBusy.
      throw new ProducerFencedError(`topic ${this.name} has exclusive producer ${exclusive.name}`);
    } else if (options.accessMode !== 'SHARED' && this.producers.size > 0) {
      throw new ProducerFencedError(`topic ${this.name} already has ${this.producers.size} producer(s)`);
    } else if (this.limits.producers > 0 && this.producers.size >= this.limits.producers) {
      throw new ProducerBusyError(`topic ${this.name} reached its max producers limit (${this.limits.producers}, the namespace's maxProducersPerTopic)`);
    }
    const producer = new Producer(nextId++, name, options.accessMode, options.sink, new RateMeter(this.options.clock), options.address);
    this.producers.add(producer);
    return producer;
  }

  removeProducer(producer: Producer): void {
    this.producers.delete(producer);
    if (this.producers.size === 0) this.exclusiveWaiters.shift()?.();
  }

  waitForNoProducers(signal: AbortSignal): Promise<void> {
    this.checkOpen();
    if (this.producers.size === 0 && this.exclusiveWaiters.length === 0) return Promise.resolve();
    if (this.exclusiveWaiters.length >= MAX_EXCLUSIVE_WAITERS) {
      return Promise.reject(new TooManyRequestsError(`${MAX_EXCLUSIVE_WAITERS} producers already wait for exclusive access to ${this.name}`));
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        signal.removeEventListener('abort', onAbort);
        this.closer.signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.exclusiveWaiters.indexOf(done);
        if (i >= 0) this.exclusiveWaiters.splice(i, 1);
        reject(this.closer.signal.aborted ? this.closer.signal.reason : new ServiceNotReadyError('producer stream ended while waiting'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.closer.signal.addEventListener('abort', onAbort, { once: true });
      this.exclusiveWaiters.push(done);
    });
  }

  lastSequenceId(producerName: string): number {
    return this.dedupEnabled ? (this.persisted.get(producerName) ?? -1) : -1;
  }

  async publish(producer: Producer, metadata: BatchMetadata__Output, batch: Buffer): Promise<PublishResult> {
    this.checkOpen();
    if (!this.producers.has(producer)) throw new ServiceNotReadyError(`producer ${producer.name} is closed`);
    if (batch.length > this.options.maxMessageBytes) throw new MessageTooLargeError(batch.length, this.options.maxMessageBytes);
    const meta = checkMetadata(metadata);
    meta.producerName = producer.name;
    meta.publishTime = this.options.clock.now();
    const delay = Number(meta.deliverAtTime ?? 0) - meta.publishTime;
    if (this.delayed.maxDelayMs > 0 && delay > this.delayed.maxDelayMs) {
      throw new NotAllowedError(`a delivery delay of ${delay} ms is over the namespace's maxDeliveryDelayMs (${this.delayed.maxDelayMs})`);
    }
    const last = Math.max(meta.sequenceId, meta.highestSequenceId);
    if (this.dedupEnabled) {
      const pushed = this.pushed.get(producer.name) ?? -1;
      if (last <= pushed) return this.duplicate(producer.name, last);
      remember(this.pushed, producer.name, last, this.options.maxDedupProducers);
    }
    const append = this.ml.append(encodeEnvelope(meta, batch));
    this.lastAppend = append;
    let pos: Position;
    try {
      pos = await append;
    } catch (err) {
      // The pushed mark must not claim what was not stored: resends of it must be accepted.
      if (this.dedupEnabled) this.pushed.set(producer.name, this.persisted.get(producer.name) ?? -1);
      throw err;
    }
    this.rateIn.record(meta.numMessages, batch.length);
    producer.rate.record(meta.numMessages, batch.length);
    if (this.dedupEnabled) {
      remember(this.persisted, producer.name, Math.max(last, this.persisted.get(producer.name) ?? -1), this.options.maxDedupProducers);
      if (++this.entriesSinceSnapshot >= this.options.dedupSnapshotEntries) this.snapshotDedup(pos);
    }
    return { kind: 'stored', ledgerId: pos.ledgerId, entryId: pos.entryId };
  }

  async subscribe(o: SubscribeOptions): Promise<{ subscription: TopicSubscription; consumer: Consumer }> {
    this.checkOpen();
    let sub: Subscription | undefined;
    if (o.durable) {
      if (o.subscription.startsWith(RESERVED_SUBSCRIPTION_PREFIX)) {
        throw new InvalidRequestError(`subscription names starting with "${RESERVED_SUBSCRIPTION_PREFIX}" are reserved`);
      }
      sub = this.subscriptions.get(o.subscription);
      if (!sub) {
        const durable = [...this.subscriptions.values()].filter((s) => s.durable).length;
        if (this.limits.subscriptions > 0 && durable >= this.limits.subscriptions) {
          throw new NotAllowedError(`topic ${this.name} reached its max subscriptions limit (${this.limits.subscriptions}, the namespace's maxSubscriptionsPerTopic)`);
        }
        const cursor = await this.ml.openCursor(o.subscription, { initialPosition: o.initialPosition });
        this.checkOpen();
        sub = this.subscriptions.get(o.subscription) ?? this.newSubscription(o.subscription, cursor);
        this.subscriptions.set(o.subscription, sub);
      }
    } else {
      const name = `${RESERVED_SUBSCRIPTION_PREFIX}reader-${o.subscription || 'r'}-${++this.readerCount}`;
      const cursor = this.ml.newNonDurableCursor(o.startMessageId ?? o.initialPosition, { inclusive: o.startInclusive, name });
      sub = this.newSubscription(name, cursor);
      this.subscriptions.set(name, sub);
    }
    const consumer = new Consumer(
      { id: nextId++, name: o.consumerName, priority: o.priority, stickyRanges: o.stickyRanges, nackDelayMs: o.nackDelayMs || this.options.defaultNackDelayMs },
      o.sink, new RateMeter(this.options.clock),
    );
    if (this.limits.consumersPerSubscription > 0 && sub.consumers.length >= this.limits.consumersPerSubscription) {
      throw new ConsumerBusyError(`subscription ${sub.name} reached its max consumers limit (${this.limits.consumersPerSubscription}, the namespace's maxConsumersPerSubscription)`);
    }
    sub.addConsumer(consumer, o.type);
    await this.persistType(sub, o.type);
    return { subscription: this.wrap(sub), consumer };
  }

  async unsubscribe(subscription: TopicSubscription, consumer: Consumer): Promise<void> {
    const sub = this.subscriptions.get(subscription.name);
    if (!sub) return;
    if (sub.consumers.some((c) => c !== consumer)) {
      throw new ConsumerBusyError(`subscription ${sub.name} has other consumers connected`);
    }
    sub.removeConsumer(consumer);
    this.subscriptions.delete(sub.name);
    await sub.close('unsubscribed', { closeCursor: !sub.durable });
    if (sub.durable) await this.ml.deleteCursor(sub.name);
  }

  /**
   * Admin: a durable subscription with no consumer yet, its cursor at `initialPosition` (Pulsar's
   * create-subscription). ALREADY_EXISTS when the subscription exists.
   */
  async createSubscription(name: string, initialPosition: InitialPosition): Promise<void> {
    this.checkOpen();
    if (name.startsWith(RESERVED_SUBSCRIPTION_PREFIX)) throw new InvalidRequestError(`subscription names starting with "${RESERVED_SUBSCRIPTION_PREFIX}" are reserved`);
    if (this.subscriptions.has(name)) throw new AlreadyExistsError(`subscription ${name} on ${this.name}`);
    const cursor = await this.ml.openCursor(name, { initialPosition });
    this.checkOpen();
    if (!this.subscriptions.has(name)) this.subscriptions.set(name, this.newSubscription(name, cursor));
  }

  /**
   * Admin: removes a durable subscription and its cursor. CONSUMER_BUSY while consumers are attached,
   * unless `force`, which closes them first (their streams get Closed). NOT_FOUND when absent.
   */
  async deleteSubscription(name: string, force: boolean): Promise<void> {
    const sub = this.durableSubscription(name);
    if (sub.consumers.length > 0 && !force) throw new ConsumerBusyError(`subscription ${name} has consumers connected`);
    this.subscriptions.delete(name);
    await sub.close('subscription deleted', { closeCursor: false });
    await this.ml.deleteCursor(name);
  }

  /** Admin: the subscription's seek, to the first message published at or after a time, or to the end (skip all). */
  async resetSubscription(name: string, target: { timestampMs: number } | 'latest'): Promise<void> {
    await this.wrap(this.durableSubscription(name)).seek(target);
  }

  /**
   * Admin (Pulsar's expireMessages): acknowledges every entry published more than `olderThanMs` ago,
   * moving the cursor only forward and keeping the individual acks after the new position.
   */
  async expireSubscription(name: string, olderThanMs: number): Promise<void> {
    const sub = this.durableSubscription(name);
    const last = this.ml.lastConfirmed;
    if (last.entryId < 0) return;
    const firstKept = await this.ml.findPositionByTime(this.options.clock.now() - olderThanMs);
    // (ledger, entry - 1) may name no entry (entry 0): the cursor takes the entry before it.
    await sub.markDeleteUpTo(firstKept ? { ledgerId: firstKept.ledgerId, entryId: firstKept.entryId - 1 } : last);
  }

  /** Admin (Pulsar's skip): acknowledges the next `entries` unacknowledged entries after the mark-delete position. */
  async skipSubscription(name: string, entries: number): Promise<void> {
    const sub = this.durableSubscription(name);
    const last = this.ml.lastConfirmed;
    let p = sub.cursor.markDeletePosition;
    // Bounded by the backlog: the walk stops at the last entry.
    for (let skipped = 0; skipped < entries && comparePositions(p, last) < 0;) {
      p = this.ml.nextPosition(p);
      if (!sub.cursor.isAcked(p)) skipped++;
    }
    await sub.markDeleteUpTo(p);
  }

  private durableSubscription(name: string): Subscription {
    this.checkOpen();
    const sub = this.subscriptions.get(name);
    if (!sub || !sub.durable) throw new NotFoundError(`subscription ${name} on ${this.name}`);
    return sub;
  }

  lastMessageId(): MessageId {
    // lastConfirmed stays on the last real entry across rollovers; entryId -1 means an empty topic.
    const last = this.ml.lastConfirmed;
    if (last.entryId < 0) return { ledgerId: -1, entryId: -1, batchIndex: -1, partition: this.name.partitionIndex };
    return { ledgerId: last.ledgerId, entryId: last.entryId, batchIndex: -1, partition: this.name.partitionIndex };
  }

  hasClients(): boolean {
    return this.producers.size > 0 || [...this.subscriptions.values()].some((s) => s.consumers.length > 0);
  }

  stats(ownerUrl: string): TopicStats {
    const ml = this.ml.stats();
    const inRate = this.rateIn.rates();
    let outMsgs = 0;
    let outBytes = 0;
    const subscriptions = [...this.subscriptions.values()].map((s) => {
      const out = s.rateOut.rates();
      outMsgs += out.msgRate;
      outBytes += out.byteRate;
      return {
        name: s.name,
        // With no consumer attached since load, the type persisted with the cursor.
        type: subscriptionTypeName(s.type) || (s.cursor.properties[SUBSCRIPTION_TYPE_PROPERTY] ?? ''),
        msgBacklog: s.cursor.backlog(), msgRateOut: out.msgRate, unackedMessages: s.unackedCount(),
        markDeletePosition: { ledgerId: s.cursor.markDeletePosition.ledgerId, entryId: s.cursor.markDeletePosition.entryId, batchIndex: -1, partition: this.name.partitionIndex },
        consumers: s.consumers.map((c) => ({ consumerName: c.name, availablePermits: c.permits, unackedMessages: c.pending.size, msgRateOut: c.rateOut.rates().msgRate })),
      };
    });
    const backlog = subscriptions.reduce((m, s) => Math.max(m, s.msgBacklog), 0);
    return {
      topic: this.name.toString(), msgRateIn: inRate.msgRate, msgThroughputIn: inRate.byteRate,
      msgRateOut: outMsgs, msgThroughputOut: outBytes, storageSize: ml.sizeBytes, backlogSize: backlog, ledgerCount: ml.ledgers,
      entriesAdded: ml.appendedEntries,
      publishers: [...this.producers].map((p) => {
        const r = p.rate.rates();
        return { producerName: p.name, msgRateIn: r.msgRate, msgThroughputIn: r.byteRate, address: p.address };
      }),
      subscriptions, ownerBroker: ownerUrl,
    };
  }

  close(reason: string, options: { redirectBrokerUrl?: string } = {}): Promise<void> {
    this.closing ??= this.shutdown(reason, false, options.redirectBrokerUrl);
    return this.closing;
  }

  async delete(): Promise<void> {
    if (this.closing) throw new ServiceNotReadyError(`topic ${this.name} is closing; retry`);
    this.closing = this.shutdown('topic deleted', true);
    await this.closing;
  }

  /** Closes producers and subscriptions, then closes (or deletes) the managed ledger. */
  private async shutdown(reason: string, deleteData: boolean, redirectBrokerUrl?: string): Promise<void> {
    this.closer.abort(new ServiceNotReadyError(`topic ${this.name} closed: ${reason}`));
    for (const p of [...this.producers]) p.sink.closed(reason, redirectBrokerUrl);
    this.producers.clear();
    // Together: each close tells its consumers at once, then waits for its cursor write; one by one, a
    // slow metadata store (a broker cut off etcd) would keep later subscriptions' consumers waiting.
    await Promise.all([...this.subscriptions.values()].map((s) => s.close(reason, { closeCursor: !deleteData, redirectBrokerUrl })));
    if (deleteData) {
      await this.ml.delete();
      this.logger.info('topic deleted');
      return;
    }
    if (this.dedupEnabled && this.dedupCursor && this.entriesSinceSnapshot > 0) {
      await this.lastAppend.catch(() => undefined);
      this.snapshotDedup(this.ml.lastConfirmed);
    }
    await this.snapshotChain;
    await this.ml.close().catch((err: unknown) => this.logger.warn({ err }, 'managed ledger close failed'));
    this.logger.info({ reason }, 'topic closed');
  }

  /** Applies new namespace policies to the loaded topic (publish rate, dedup on/off). */
  async applyPolicies(policies: NamespacePolicies): Promise<void> {
    this.publishRate.update(policies.publishRateMsgsPerSecond ?? 0, policies.publishRateBytesPerSecond ?? 0);
    this.dispatchRateLimits = dispatchRateOf(policies);
    this.limits = limitsOf(policies);
    this.delayed = delayedOf(policies);
    for (const sub of this.subscriptions.values()) {
      sub.dispatchRate.update(this.dispatchRateLimits.msgsPerSecond, this.dispatchRateLimits.bytesPerSecond);
      sub.delayedDelivery = this.delayed.enabled;
      sub.schedule();
    }
    if (policies.deduplicationEnabled === this.dedupEnabled) return;
    if (policies.deduplicationEnabled) {
      await this.recoverDedup();
      this.dedupEnabled = true;
    } else {
      this.dedupEnabled = false;
      this.persisted.clear();
      this.pushed.clear();
      if (this.ml.getCursor(DEDUP_CURSOR)) await this.ml.deleteCursor(DEDUP_CURSOR);
      this.dedupCursor = undefined;
    }
  }

  private async duplicate(producerName: string, last: number): Promise<PublishResult> {
    // Still in flight: answer once the original is stored (or fail so the client resends).
    if (last > (this.persisted.get(producerName) ?? -1)) await this.lastAppend.catch(() => undefined);
    if (last <= (this.persisted.get(producerName) ?? -1)) return { kind: 'duplicate' };
    throw new ServiceNotReadyError(`the first copy of sequence id ${last} of ${producerName} failed; resend`);
  }

  private async recoverDedup(): Promise<void> {
    const cursor = await this.ml.openCursor(DEDUP_CURSOR, { initialPosition: 'latest' });
    this.dedupCursor = cursor;
    for (const [k, v] of Object.entries(cursor.properties)) {
      if (k.startsWith('p:')) this.persisted.set(k.slice(2), Number(v));
    }
    let from = this.ml.nextPosition(cursor.markDeletePosition);
    let scanned = 0;
    for (;;) {
      const entries = await this.ml.read(from, { maxEntries: 500 });
      if (entries.length === 0) break;
      for (const e of entries) {
        try {
          const m = decodeEnvelope(e.payload).metadata;
          if (m?.producerName) {
            const last = Math.max(m.sequenceId, m.highestSequenceId);
            remember(this.persisted, m.producerName, Math.max(last, this.persisted.get(m.producerName) ?? -1), this.options.maxDedupProducers);
          }
        } catch (err) {
          this.logger.warn({ err, ledgerId: e.position.ledgerId, entryId: e.position.entryId }, 'undecodable entry skipped by dedup scan');
        }
      }
      scanned += entries.length;
      from = this.ml.nextPosition((entries[entries.length - 1] as { position: Position }).position);
    }
    for (const [k, v] of this.persisted) this.pushed.set(k, v);
    this.logger.info({ producers: this.persisted.size, scanned }, 'deduplication state recovered');
    if (scanned > 0) this.snapshotDedup(this.ml.lastConfirmed);
  }

  /** Records the dedup map as of `pos` (every entry <= pos is reflected in it). Serialized, errors logged. */
  private snapshotDedup(pos: Position): void {
    const cursor = this.dedupCursor;
    if (!cursor || pos.entryId < 0) return;
    this.entriesSinceSnapshot = 0;
    const properties: Record<string, string> = {};
    for (const [k, v] of this.persisted) properties[`p:${k}`] = String(v);
    this.snapshotChain = this.snapshotChain
      .then(() => cursor.ackCumulative(pos, { properties }))
      .catch((err: unknown) => this.logger.warn({ err }, 'dedup snapshot failed (recovery will scan further back)'));
  }

  /**
   * Writes the subscription type into the durable cursor's properties when it changed (the first
   * consumer, or all consumers left and one of another type came), and persists it at once. A failed
   * persist is only logged: the cursor stays dirty and the periodic flush writes it.
   */
  private async persistType(sub: Subscription, type: SubscriptionType): Promise<void> {
    const name = subscriptionTypeName(type);
    if (!sub.durable || sub.cursor.properties[SUBSCRIPTION_TYPE_PROPERTY] === name) return;
    await sub.cursor.setProperties({ ...sub.cursor.properties, [SUBSCRIPTION_TYPE_PROPERTY]: name });
    await sub.cursor.flush().catch((err: unknown) => this.logger.warn({ err, subscription: sub.name }, 'persisting the subscription type failed (the periodic flush retries)'));
  }

  private newSubscription(name: string, cursor: Cursor): Subscription {
    return new Subscription(name, cursor, this.ml, {
      readAheadEntries: this.options.readAheadEntries, readMaxBytes: this.options.readMaxBytes,
      maxRedeliveryPositions: this.options.maxRedeliveryPositions, partitionIndex: this.name.partitionIndex,
      clock: this.options.clock, logger: this.logger, metrics: this.options.metrics, dispatchRate: this.dispatchRateLimits,
      delayedDelivery: this.delayed.enabled,
    }, (sub) => {
      this.subscriptions.delete(sub.name);
      void sub.close('reader closed');
    });
  }

  private wrap(sub: Subscription): TopicSubscription {
    return {
      name: sub.name,
      flow: (c, n) => sub.flow(c, n),
      ack: (c, p, cumulative) => sub.ack(c, p, cumulative),
      ackBatchIndexes: (c, acks) => sub.ackBatchIndexes(c, acks),
      persistAcks: (p, cumulative) => sub.persistAcks(p, cumulative),
      nack: (c, p) => sub.nack(c, p),
      redeliverUnacknowledged: (c, p) => sub.redeliverUnacknowledged(c, p),
      removeConsumer: (c) => sub.removeConsumer(c),
      seek: async (target) => {
        if (typeof target === 'object' && 'timestampMs' in target) {
          const pos = await this.ml.findPositionByTime(target.timestampMs);
          return sub.seek(pos ?? 'latest');
        }
        if (typeof target === 'object' && 'after' in target) return sub.seek(this.ml.nextPosition(target.after));
        return sub.seek(target);
      },
    };
  }

  private checkOpen(): void {
    if (this.closer.signal.aborted) throw new ServiceNotReadyError(`topic ${this.name} is closed; look it up again`);
  }
}

/** Validates a producer's batch metadata; returns a copy the broker may complete. */
export function checkMetadata(m: BatchMetadata__Output | null | undefined): BatchMetadata__Output {
  if (!m) throw new InvalidRequestError('send without batch metadata');
  if (!Number.isInteger(m.numMessages) || m.numMessages < 1) throw new InvalidRequestError(`num_messages must be >= 1, got ${m.numMessages}`);
  if (!Number.isSafeInteger(m.sequenceId) || m.sequenceId < 0) throw new InvalidRequestError(`bad sequence_id ${m.sequenceId}`);
  if (!Number.isSafeInteger(m.highestSequenceId) || m.highestSequenceId < 0) throw new InvalidRequestError(`bad highest_sequence_id ${m.highestSequenceId}`);
  if (m.highestSequenceId !== 0 && m.highestSequenceId < m.sequenceId) {
    throw new InvalidRequestError(`highest_sequence_id ${m.highestSequenceId} < sequence_id ${m.sequenceId}`);
  }
  if (typeof m.compression !== 'string') throw new InvalidRequestError(`unknown compression ${String(m.compression)}`);
  if ((m.batchKey ?? '').length > 64 * 1024) throw new InvalidRequestError('batch_key longer than 64 KiB');
  return { ...m };
}

/** Map as LRU: re-inserting moves the key last; the first keys go when the map is full. */
function remember(map: Map<string, number>, key: string, value: number, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as string);
}

function dispatchRateOf(p: NamespacePolicies): { msgsPerSecond: number; bytesPerSecond: number } {
  return { msgsPerSecond: p.subscriptionDispatchRateMsgsPerSecond ?? 0, bytesPerSecond: p.subscriptionDispatchRateBytesPerSecond ?? 0 };
}

function limitsOf(p: NamespacePolicies): { producers: number; subscriptions: number; consumersPerSubscription: number } {
  return { producers: p.maxProducersPerTopic ?? 0, subscriptions: p.maxSubscriptionsPerTopic ?? 0, consumersPerSubscription: p.maxConsumersPerSubscription ?? 0 };
}

function delayedOf(p: NamespacePolicies): { enabled: boolean; maxDelayMs: number } {
  return { enabled: p.delayedDeliveryEnabled !== false, maxDelayMs: p.maxDeliveryDelayMs ?? 0 };
}
