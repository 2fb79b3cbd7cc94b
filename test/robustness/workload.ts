/**
 * The robustness workload (docs/robustness.md): producers whose payloads are `<producer>:<seq>`,
 * consumers of every subscription type on their own subscriptions, and a History per subscription
 * that the scenario checks once the load has stopped and the consumers have drained.
 *
 * Bounded on purpose: a message cap per producer, a cap on sends in flight, and deadlines on the
 * final flush and drain, so that a broken cluster fails the test instead of hanging it.
 */
import { Client, type Consumer, type Message, type Producer, type SubscriptionType } from '@strata/client';
import { pino } from 'pino';
import { History, type HistoryReport } from '../harness/history.js';

export const SUBSCRIPTION_TYPES: readonly SubscriptionType[] = ['Exclusive', 'Failover', 'Shared', 'KeyShared'];

/** How many consumers each subscription type gets (two where the type shares or fails over). */
const CONSUMERS_PER_TYPE: Record<SubscriptionType, number> = { Exclusive: 1, Failover: 2, Shared: 2, KeyShared: 2 };

/** Types whose delivery order per producer is guaranteed (per key on KeyShared). */
export const ORDERED_TYPES: ReadonlySet<SubscriptionType> = new Set<SubscriptionType>(['Exclusive', 'Failover', 'KeyShared']);

export interface WorkloadOptions {
  serviceUrl: string;
  /** A fresh topic (the subscriptions start at its earliest message). */
  topic: string;
  producers?: number;
  /** Per producer; the load stops there even if the schedule is still running. */
  maxMessagesPerProducer?: number;
  /** Sends per second per producer (paced; modest on purpose: the machines are shared). */
  ratePerProducer?: number;
  /** Sends awaiting their acknowledgement, per producer; past it the producer waits. */
  maxInFlight?: number;
  subscriptions?: readonly SubscriptionType[];
  log?: (line: string) => void;
  /** The SDK's own log (reconnections, resends) goes here, at info level; default: nowhere. */
  clientLogFile?: string;
}

export interface SubscriptionReport extends HistoryReport {
  subscription: string;
  type: SubscriptionType;
  ordered: boolean;
  /** Longest time without a delivery while producers were sending. */
  maxReceiveGapMs: number;
}

export interface ProducerReport {
  name: string;
  sent: number;
  acknowledged: number;
  /** send() promises that rejected (the message may or may not be stored). */
  failed: number;
  firstError?: string;
  /** Longest time between two acknowledgements while sending: how long a fault stalled publishing. */
  maxAckGapMs: number;
}

interface ProducerState {
  name: string;
  producer: Producer;
  sent: number;
  acked: number;
  failed: number;
  firstError?: string;
  /** Send time (ms since epoch) of each acknowledged message. */
  ackedSentAt: number[];
  inFlight: Set<Promise<void>>;
  lastAckAt: number;
  maxAckGapMs: number;
}

interface SubscriptionState {
  name: string;
  type: SubscriptionType;
  history: History;
  consumers: Consumer[];
  lastReceiveAt: number;
  /** Longest time without a delivery while producers were sending. */
  maxReceiveGapMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Workload {
  private readonly client: Client;
  private readonly producers: ProducerState[] = [];
  private readonly subs: SubscriptionState[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly consumerLoops: Promise<void>[] = [];
  private producing = false;
  private consuming = false;
  private readonly log: (line: string) => void;
  private readonly opts: Required<Omit<WorkloadOptions, 'log' | 'clientLogFile'>>;
  private readonly logFile: ReturnType<typeof pino.destination> | undefined;

  constructor(options: WorkloadOptions) {
    this.opts = {
      producers: 3, maxMessagesPerProducer: 3000, ratePerProducer: 40, maxInFlight: 200,
      subscriptions: SUBSCRIPTION_TYPES, ...options,
    };
    this.log = options.log ?? (() => undefined);
    this.logFile = options.clientLogFile ? pino.destination({ dest: options.clientLogFile, sync: true }) : undefined;
    const logger = this.logFile ? pino({ level: 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, this.logFile) : undefined;
    // Generous deadlines and a short backoff ceiling: a fault lasts seconds and the machine is loaded.
    this.client = new Client({
      serviceUrl: options.serviceUrl, operationTimeoutSeconds: 60, initialBackoffIntervalMs: 100, maxBackoffIntervalMs: 2000, ...(logger ? { logger } : {}),
    });
  }

  /** Subscribes every consumer (earliest position), creates the producers, and starts the load. */
  async start(): Promise<void> {
    for (const type of this.opts.subscriptions) {
      const name = `sub-${type.toLowerCase()}`;
      const sub: SubscriptionState = { name, type, history: new History(), consumers: [], lastReceiveAt: 0, maxReceiveGapMs: 0 };
      for (let i = 0; i < CONSUMERS_PER_TYPE[type]; i++) {
        sub.consumers.push(await this.client.subscribe({
          topic: this.opts.topic, subscription: name, subscriptionType: type, subscriptionInitialPosition: 'Earliest',
          consumerName: `${name}-c${i}`, receiverQueueSize: 100,
        }));
      }
      this.subs.push(sub);
    }
    this.consuming = true;
    for (const sub of this.subs) for (const consumer of sub.consumers) this.consumerLoops.push(this.consume(sub, consumer));
    for (let i = 0; i < this.opts.producers; i++) {
      const name = `p${i}`;
      const producer = await this.client.createProducer({
        topic: this.opts.topic, producerName: name, sendTimeoutMs: 0, maxPendingMessages: this.opts.maxInFlight * 2,
        batchingEnabled: true, batchingMaxPublishDelayMs: 5,
        // One key per producer, so a (default) batch has one key: KeyShared routes whole batches by it
        // and per-key order is per-producer order. Several keys per producer would need KeyBasedBatching,
        // which (as in Pulsar) keeps order per key only, not across a producer's keys.
      });
      this.producers.push({ name, producer, sent: 0, acked: 0, failed: 0, ackedSentAt: [], inFlight: new Set(), lastAckAt: 0, maxAckGapMs: 0 });
    }
    this.producing = true;
    const now = Date.now();
    for (const p of this.producers) p.lastAckAt = now;
    for (const sub of this.subs) sub.lastReceiveAt = now;
    for (const p of this.producers) this.loops.push(this.produce(p));
  }

  private async produce(p: ProducerState): Promise<void> {
    const interval = 1000 / this.opts.ratePerProducer;
    const started = Date.now();
    for (let seq = 0; this.producing && seq < this.opts.maxMessagesPerProducer; seq++) {
      const due = started + seq * interval;
      if (due > Date.now()) await sleep(due - Date.now());
      while (p.inFlight.size >= this.opts.maxInFlight && this.producing) await Promise.race(p.inFlight);
      if (!this.producing) break;
      let key = '';
      for (const sub of this.subs) key = sub.history.sending(p.name, seq);
      const sentAt = Date.now();
      p.sent++;
      const done: Promise<void> = p.producer
        .send({ data: Buffer.from(key), partitionKey: p.name })
        .then(
          () => {
            p.acked++;
            p.ackedSentAt.push(sentAt);
            const now = Date.now();
            // Also after the load stopped: a send still unanswered then is a stall too.
            p.maxAckGapMs = Math.max(p.maxAckGapMs, now - p.lastAckAt);
            p.lastAckAt = now;
            for (const sub of this.subs) sub.history.acknowledged(key);
          },
          (err: unknown) => {
            p.failed++;
            p.firstError ??= String(err);
          },
        )
        .finally(() => p.inFlight.delete(done));
      p.inFlight.add(done);
    }
  }

  private async consume(sub: SubscriptionState, consumer: Consumer): Promise<void> {
    while (this.consuming) {
      let msg: Message;
      try {
        msg = await consumer.receive(500);
      } catch {
        continue; // timeout, or closed: the loop condition decides
      }
      const now = Date.now();
      if (this.producing) sub.maxReceiveGapMs = Math.max(sub.maxReceiveGapMs, now - sub.lastReceiveAt);
      sub.lastReceiveAt = now;
      const payload = msg.getData().toString('utf8');
      const stream = sub.type === 'KeyShared' ? `${sub.name}/${msg.getPartitionKey()}` : sub.name;
      sub.history.receivedBy(stream, payload, msg.getMessageId().toString());
      // An acknowledgement lost in a fault only means a redelivery, which the checks allow while it is
      // younger than the cursor's persistence window.
      consumer.acknowledge(msg).then(() => sub.history.consumerAcknowledged(payload), () => undefined);
    }
  }

  /** Stops sending and waits (up to `timeoutMs`) for every send in flight to be acknowledged or fail. */
  async stopProducing(timeoutMs = 120_000): Promise<void> {
    this.producing = false;
    await Promise.all(this.loops);
    const pending = this.producers.flatMap((p) => [...p.inFlight]);
    const timedOut = await Promise.race([Promise.all(pending).then(() => false), sleep(timeoutMs).then(() => true)]);
    if (timedOut) this.log(`stopProducing: ${this.producers.reduce((n, p) => n + p.inFlight.size, 0)} sends still unanswered after ${timeoutMs} ms`);
  }

  /**
   * Waits until every subscription has received every acknowledged message (or the deadline), then
   * a little longer to catch late duplicates.
   */
  async drain(timeoutMs = 120_000, quietMs = 1500): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.subs.some((s) => s.history.missing() > 0)) await sleep(200);
    await sleep(quietMs);
  }

  /**
   * Reads the whole topic again on a fresh subscription (from the earliest message), after the faults:
   * what the live consumers got could have come from a broker's memory, this comes from the bookies.
   */
  async readBack(timeoutMs = 120_000): Promise<SubscriptionReport> {
    const history = new History();
    for (const p of this.producers) {
      for (let seq = 0; seq < p.sent; seq++) history.sending(p.name, seq);
    }
    for (const key of this.subs[0]?.history.acknowledgedKeys() ?? []) history.acknowledged(key);
    const consumer = await this.client.subscribe({
      topic: this.opts.topic, subscription: 'readback', subscriptionType: 'Exclusive', subscriptionInitialPosition: 'Earliest', receiverQueueSize: 1000,
    });
    try {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && history.missing() > 0) {
        let msg: Message;
        try {
          msg = await consumer.receive(1000);
        } catch {
          continue;
        }
        history.receivedBy('readback', msg.getData().toString('utf8'), msg.getMessageId().toString());
        consumer.acknowledge(msg).catch(() => undefined);
      }
    } finally {
      await consumer.close().catch(() => undefined);
    }
    return { subscription: 'readback', type: 'Exclusive', ordered: true, maxReceiveGapMs: 0, ...history.check() };
  }

  /** Sends acknowledged so far whose send started after `time` (ms since epoch), per producer. */
  ackedSentAfter(time: number): Record<string, number> {
    return Object.fromEntries(this.producers.map((p) => [p.name, p.ackedSentAt.filter((t) => t > time).length]));
  }

  producerReports(): ProducerReport[] {
    return this.producers.map((p) => ({ name: p.name, sent: p.sent, acknowledged: p.acked, failed: p.failed, maxAckGapMs: p.maxAckGapMs, ...(p.firstError ? { firstError: p.firstError } : {}) }));
  }

  /** `check`: History's options (fault times and the acknowledgement persistence window). */
  subscriptionReports(check: Parameters<History['check']>[0] = {}): SubscriptionReport[] {
    return this.subs.map((s) => ({ subscription: s.name, type: s.type, ordered: ORDERED_TYPES.has(s.type), maxReceiveGapMs: s.maxReceiveGapMs, ...s.history.check(check) }));
  }

  /** Stops the consumer loops and closes the client (producers and consumers with it). */
  async close(): Promise<void> {
    this.producing = false;
    this.consuming = false;
    await Promise.all(this.consumerLoops);
    await this.client.close().catch(() => undefined);
    this.logFile?.end();
  }
}

/** A one-line summary of a report, for the test log (the full lists go in failure messages). */
export function summarize(reports: SubscriptionReport[]): string {
  return reports
    .map((r) => `${r.subscription}: acked=${r.acknowledged} delivered=${r.delivered} lost=${r.lost.length} dup=${r.duplicates.length} storedTwice=${r.storedTwice.length} reordered=${r.reordered.length} phantom=${r.phantom.length} redeliveredAfterAck=${r.redeliveredAfterAck.length} maxReceiveGapMs=${r.maxReceiveGapMs}`)
    .join('\n');
}
