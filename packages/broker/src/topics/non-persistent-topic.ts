import type { Clock, Logger } from '@strata/runtime';
import { Consumer, subscriptionTypeName, type DispatchEntry, type SubscriptionType } from './consumer.js';
import { ConsumerBusyError, MessageTooLargeError, ProducerBusyError, ServiceNotReadyError, UnimplementedError } from '../errors.js';
import type { BatchMetadata__Output } from '../generated/strata/broker/v1/BatchMetadata.js';
import type { MessageId } from '../generated/strata/broker/v1/MessageId.js';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import type { BrokerMetrics } from '../metrics.js';
import type { TopicName } from '../names.js';
import { Producer, type AccessMode, type ProducerSink, type PublishResult } from './producer.js';
import { RateMeter } from './rate.js';
import type { Position } from '../storage/index.js';
import { keyHashOf } from './subscription.js';
import { checkMetadata, type SubscribeOptions, type Topic, type TopicSubscription } from './topic.js';

/** Ledger id of non-persistent message ids: entry ids count the messages since the topic loaded. */
export const NON_PERSISTENT_LEDGER_ID = 0;

class NpSubscription implements TopicSubscription {
  readonly consumers: Consumer[] = [];
  type: SubscriptionType | undefined;
  dropped = 0;
  private rr = 0;
  readonly rateOut: RateMeter;

  constructor(readonly name: string, clock: Clock) {
    this.rateOut = new RateMeter(clock);
  }

  flow(consumer: Consumer, permits: number): void {
    consumer.permits = Math.min(consumer.permits + Math.max(0, Math.floor(permits)), 1_000_000);
  }
  async ack(): Promise<void> {}
  async ackBatchIndexes(): Promise<void> {}
  /** Nothing is persisted on a non-persistent topic: an ack receipt is given at once. */
  async persistAcks(): Promise<void> {}
  nack(): void {}
  redeliverUnacknowledged(): void {}
  async seek(): Promise<never> {
    throw new UnimplementedError('seek on a non-persistent topic');
  }
  removeConsumer(consumer: Consumer): void {
    const i = this.consumers.indexOf(consumer);
    if (i >= 0) this.consumers.splice(i, 1);
    this.updateActive();
  }

  add(consumer: Consumer, type: SubscriptionType): void {
    if (this.consumers.length > 0 && this.type !== type) throw new ConsumerBusyError(`subscription ${this.name} is ${this.type}`);
    if (type === 'EXCLUSIVE_SUB' && this.consumers.length > 0) throw new ConsumerBusyError(`exclusive subscription ${this.name} already has a consumer`);
    this.type = type;
    this.consumers.push(consumer);
    this.updateActive();
  }

  /** Delivers to one consumer with a permit, or drops (and counts) the entry; false when dropped. */
  dispatch(entry: DispatchEntry): boolean {
    let target: Consumer | undefined;
    if (this.type === 'SHARED_SUB') {
      for (let i = 0; i < this.consumers.length && !target; i++) {
        const c = this.consumers[(this.rr + i) % this.consumers.length] as Consumer;
        if (c.permits > 0) {
          target = c;
          this.rr = (this.rr + i + 1) % this.consumers.length;
        }
      }
    } else if (this.type === 'KEY_SHARED_SUB') {
      target = this.consumers[entry.keyHash % Math.max(1, this.consumers.length)];
    } else {
      target = this.consumers.find((c) => c.isActive);
    }
    if (!target || target.permits <= 0) {
      this.dropped++;
      return false;
    }
    target.permits--;
    const msgs = entry.envelope.metadata?.numMessages ?? 1;
    this.rateOut.record(msgs, entry.size);
    target.rateOut.record(msgs, entry.size);
    target.sink.deliver([entry]);
    return true;
  }

  private updateActive(): void {
    const sorted = [...this.consumers].sort((a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const active = this.type === 'FAILOVER_SUB' || this.type === 'EXCLUSIVE_SUB' ? sorted[0] : undefined;
    for (const c of this.consumers) {
      const now = active ? c === active : true;
      if (now !== c.isActive && this.type === 'FAILOVER_SUB') c.sink.activeChange(now);
      c.isActive = now;
    }
  }
}

/**
 * A non-persistent topic: nothing is stored. A published batch goes at once to the consumers connected
 * at that moment (one per subscription, by type); a subscription whose chosen consumer has no permit
 * drops it and counts the drop. Receipts carry ids (0, n) where n counts entries since load.
 */
export class NonPersistentTopic implements Topic {
  readonly persistent = false;
  private readonly producers = new Set<Producer>();
  private readonly subscriptions = new Map<string, NpSubscription>();
  private readonly closer = new AbortController();
  private readonly rateIn: RateMeter;
  private nextEntryId = 0;
  private nextId = 1;
  private readerCount = 0;

  constructor(
    readonly name: TopicName,
    private readonly options: { maxMessageBytes: number; producerNamePrefix: string; clock: Clock; logger: Logger; metrics?: BrokerMetrics },
  ) {
    this.rateIn = new RateMeter(options.clock);
  }

  get closedSignal(): AbortSignal {
    return this.closer.signal;
  }

  addProducer(o: { name: string; accessMode: AccessMode; sink: ProducerSink; address: string }): Producer {
    this.checkOpen();
    if (o.accessMode !== 'SHARED') throw new UnimplementedError(`producer access mode ${o.accessMode} on a non-persistent topic`);
    const name = o.name || `${this.options.producerNamePrefix}-np${this.nextId}`;
    if ([...this.producers].some((p) => p.name === name)) throw new ProducerBusyError(`producer ${name} is already connected`);
    const p = new Producer(this.nextId++, name, o.accessMode, o.sink, new RateMeter(this.options.clock), o.address);
    this.producers.add(p);
    return p;
  }

  async waitForNoProducers(): Promise<void> {
    throw new UnimplementedError('WAIT_FOR_EXCLUSIVE on a non-persistent topic');
  }

  removeProducer(producer: Producer): void {
    this.producers.delete(producer);
  }

  lastSequenceId(): number {
    return -1;
  }

  async publish(producer: Producer, metadata: BatchMetadata__Output, batch: Buffer): Promise<PublishResult> {
    this.checkOpen();
    if (batch.length > this.options.maxMessageBytes) throw new MessageTooLargeError(batch.length, this.options.maxMessageBytes);
    const meta = checkMetadata(metadata);
    meta.producerName = producer.name;
    meta.publishTime = this.options.clock.now();
    const position: Position = { ledgerId: NON_PERSISTENT_LEDGER_ID, entryId: this.nextEntryId++ };
    const entry: DispatchEntry = {
      position, envelope: { metadata: meta, batch }, size: batch.length, keyHash: keyHashOf(meta.batchKey), redeliveryCount: 0,
    };
    this.rateIn.record(meta.numMessages, batch.length);
    producer.rate.record(meta.numMessages, batch.length);
    for (const sub of this.subscriptions.values()) {
      if (!sub.dispatch(entry)) this.options.metrics?.droppedNonPersistent.inc();
    }
    return { kind: 'stored', ...position };
  }

  async subscribe(o: SubscribeOptions): Promise<{ subscription: TopicSubscription; consumer: Consumer }> {
    this.checkOpen();
    const name = o.durable ? o.subscription : `strata.reader-${o.subscription || 'r'}-${++this.readerCount}`;
    let sub = this.subscriptions.get(name);
    if (!sub) {
      sub = new NpSubscription(name, this.options.clock);
      this.subscriptions.set(name, sub);
    }
    const consumer = new Consumer(
      { id: this.nextId++, name: o.consumerName, priority: o.priority, stickyRanges: [], nackDelayMs: 0 }, o.sink, new RateMeter(this.options.clock),
    );
    sub.add(consumer, o.type);
    const s = sub;
    return {
      consumer,
      subscription: {
        name, flow: (c, n) => s.flow(c, n), ack: () => s.ack(), ackBatchIndexes: () => s.ackBatchIndexes(), persistAcks: () => s.persistAcks(), nack: () => s.nack(), redeliverUnacknowledged: () => s.redeliverUnacknowledged(),
        seek: () => s.seek(),
        removeConsumer: (c) => {
          s.removeConsumer(c);
          // Nothing outlives its consumers on a non-persistent topic.
          if (s.consumers.length === 0) this.subscriptions.delete(name);
        },
      },
    };
  }

  async unsubscribe(subscription: TopicSubscription, consumer: Consumer): Promise<void> {
    const sub = this.subscriptions.get(subscription.name);
    if (!sub) return;
    if (sub.consumers.some((c) => c !== consumer)) throw new ConsumerBusyError(`subscription ${sub.name} has other consumers connected`);
    this.subscriptions.delete(sub.name);
  }

  lastMessageId(): MessageId {
    return { ledgerId: this.nextEntryId === 0 ? -1 : NON_PERSISTENT_LEDGER_ID, entryId: this.nextEntryId - 1, batchIndex: -1, partition: this.name.partitionIndex };
  }

  hasClients(): boolean {
    return this.producers.size > 0 || this.subscriptions.size > 0;
  }

  stats(ownerUrl: string): TopicStats {
    const r = this.rateIn.rates();
    let outMsgs = 0;
    let outBytes = 0;
    const subscriptions = [...this.subscriptions.values()].map((s) => {
      const out = s.rateOut.rates();
      outMsgs += out.msgRate;
      outBytes += out.byteRate;
      return {
        name: s.name, type: subscriptionTypeName(s.type), msgBacklog: 0, msgRateOut: out.msgRate, unackedMessages: 0, msgDropped: s.dropped,
        consumers: s.consumers.map((c) => ({ consumerName: c.name, availablePermits: c.permits, unackedMessages: 0, msgRateOut: c.rateOut.rates().msgRate })),
      };
    });
    return {
      topic: this.name.toString(), msgRateIn: r.msgRate, msgThroughputIn: r.byteRate, msgRateOut: outMsgs, msgThroughputOut: outBytes,
      storageSize: 0, backlogSize: 0, ledgerCount: 0, entriesAdded: this.nextEntryId,
      publishers: [...this.producers].map((p) => ({ producerName: p.name, msgRateIn: p.rate.rates().msgRate, msgThroughputIn: p.rate.rates().byteRate, address: p.address })),
      subscriptions, ownerBroker: ownerUrl,
    };
  }

  async close(reason: string, options: { redirectBrokerUrl?: string } = {}): Promise<void> {
    if (this.closer.signal.aborted) return;
    this.closer.abort(new ServiceNotReadyError(`topic ${this.name} closed: ${reason}`));
    for (const p of this.producers) p.sink.closed(reason, options.redirectBrokerUrl);
    this.producers.clear();
    for (const s of this.subscriptions.values()) for (const c of s.consumers) c.sink.closed(reason, options.redirectBrokerUrl);
    this.subscriptions.clear();
  }

  async delete(): Promise<void> {
    await this.close('topic deleted');
  }

  private checkOpen(): void {
    if (this.closer.signal.aborted) throw new ServiceNotReadyError(`topic ${this.name} is closed; look it up again`);
  }
}
