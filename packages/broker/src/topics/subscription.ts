import { crc32c } from '@node-rs/crc32';
import type { Clock, Logger } from '@strata/runtime';
import { decodeEnvelope } from './codec.js';
import { Consumer, type DispatchEntry, type SubscriptionType } from './consumer.js';
import { AckNotDurableError, ConsumerBusyError, InvalidRequestError } from '../errors.js';
import type { BrokerMetrics } from '../metrics.js';
import { RateLimiter } from '../policies/rate-limiter.js';
import { RateMeter } from './rate.js';
import {
  comparePositions, positionToString, type Cursor, type Entry, type InitialPosition, type ManagedLedger, type Position,
} from '../storage/index.js';

/** Key_Shared hashes keys into this many slots (as Pulsar's 0..65535 range). */
export const KEY_HASH_SLOTS = 65536;
/** Points per consumer on the AUTO_SPLIT consistent-hash ring. */
const RING_POINTS = 64;

export function keyHashOf(key: string): number {
  return (crc32c(Buffer.from(key, 'utf8')) >>> 0) % KEY_HASH_SLOTS;
}

export interface SubscriptionOptions {
  /** Entries read from storage but not yet dispatched, at most. Reads pause at this limit. */
  readAheadEntries: number;
  /** Bytes per storage read. */
  readMaxBytes: number;
  /** Positions waiting for redelivery (nacked, unacked of a consumer that left) at most; past it the
   * oldest pending nacks are redelivered early and readers stop reading ahead until it drains. */
  maxRedeliveryPositions: number;
  /** Partition index of the topic (-1 when not partitioned): Failover spreads partitions over consumers. */
  partitionIndex: number;
  clock: Clock;
  logger: Logger;
  metrics?: BrokerMetrics;
  /** The namespace's subscriptionDispatchRate (messages/s, bytes/s; 0 = none), per subscription. */
  dispatchRate?: { msgsPerSecond: number; bytesPerSecond: number };
  /** The namespace's delayed delivery switch (default on): off, a deliverAt time is ignored. */
  delayedDelivery?: boolean;
}

const key = positionToString;

/**
 * Entries whose batch has batch index acks but is not wholly acked yet, kept per subscription. Past
 * this, the oldest entry's partial acks are forgotten (its batch then comes back whole: at least once).
 */
export const MAX_PARTIAL_BATCH_ACKS = 10_000;
/** How many of them are kept in the cursor's properties, so that they survive a broker restart. */
export const MAX_PERSISTED_BATCH_ACKS = 1_000;
/** Largest batch a batch index ack may name (the SDK's batchingMaxMessages limit). */
const MAX_BATCH_SIZE = 100_000;
/** The cursor property that holds them: {"ledger:entry": [batchSize, [acked indexes]]}. */
export const BATCH_ACKS_PROPERTY = 'strata.batchIndexAcks';

/** One message of a batched entry acknowledged on its own (batchIndexAckEnabled). */
export interface BatchIndexAck {
  position: Position;
  index: number;
  size: number;
}

/**
 * A subscription: a cursor plus the consumers attached to it and the dispatcher that feeds them.
 *
 * Dispatch is one loop per subscription (never two at once): load positions waiting for redelivery,
 * read new entries from the cursor (bounded by the consumers' permits and readAheadEntries), then hand
 * buffered entries to consumers in position order according to the subscription type:
 * - Exclusive / Failover: the active consumer only (Failover: lowest priority level, then name).
 * - Shared: round-robin over consumers that have permits, lowest priority level first.
 * - Key_Shared: the consumer owning the entry's key hash (AUTO_SPLIT consistent hashing or STICKY
 *   ranges); an entry of a hash whose earlier entries are still unacked at another consumer waits
 *   until those are acked or handed back, so per-key order holds while consumers join and leave. Only
 *   that hash waits: other keys keep flowing (no stuck subscription).
 */
export class Subscription {
  readonly consumers: Consumer[] = [];
  type: SubscriptionType | undefined;
  private buffer: DispatchEntry[] = [];
  private readonly redeliver = new Map<string, Position>();
  private readonly redeliveryCounts = new Map<string, number>();
  /** Batch index acks of entries not wholly acked yet (insertion order: oldest first). */
  private readonly batchAcks: Map<string, { position: Position; size: number; acked: Set<number> }>;
  /**
   * Entries waiting for a time: nacked ones (`counted`: their return counts as a redelivery) and, on
   * Shared subscriptions, delayed-delivery ones (deliver_at_time in the future).
   */
  private readonly nacked = new Map<string, { position: Position; dueMs: number; counted: boolean }>();
  private nackTimer: NodeJS.Timeout | undefined;
  private nackTimerDueMs = Infinity;
  /** Key_Shared: which consumer holds unacked entries of a hash, and how many. */
  private readonly hashHolders = new Map<number, { consumer: Consumer; count: number }>();
  /**
   * Key_Shared: positions of blocked entries moved out of a full read-ahead buffer, by hash, so other
   * keys keep flowing. They return to the redelivery queue when their hash is free again.
   */
  private readonly parked = new Map<number, Position[]>();
  private parkedCount = 0;
  private ring: Array<{ point: number; consumer: Consumer }> = [];
  private rrIndex = 0;
  private running = false;
  /** Dispatch rate limit: while in debt, nothing is handed out; `rateTimer` dispatches again once paid. */
  readonly dispatchRate: RateLimiter;
  private rateTimer: NodeJS.Timeout | undefined;
  /** Delayed delivery on (the namespace policy; Topic.applyPolicies changes it). */
  delayedDelivery: boolean;
  private seeking = false;
  private again = false;
  private waiting = false;
  private closed = false;
  private readonly abort = new AbortController();
  private readonly logger: Logger;
  readonly rateOut: RateMeter;

  constructor(
    readonly name: string,
    readonly cursor: Cursor,
    private readonly ml: ManagedLedger,
    private readonly options: SubscriptionOptions,
    /** Called when the subscription has no consumers left and is not durable (readers). */
    private readonly onEmpty: (sub: Subscription) => void,
  ) {
    this.logger = options.logger.child({ component: 'subscription', subscription: name });
    this.rateOut = new RateMeter(options.clock);
    this.batchAcks = loadBatchAcks(cursor.properties[BATCH_ACKS_PROPERTY]);
    this.delayedDelivery = options.delayedDelivery ?? true;
    this.dispatchRate = new RateLimiter(options.dispatchRate?.msgsPerSecond ?? 0, options.dispatchRate?.bytesPerSecond ?? 0, options.clock);
  }

  get durable(): boolean {
    return this.cursor.durable;
  }

  addConsumer(consumer: Consumer, type: SubscriptionType): void {
    if (this.closed) throw new ConsumerBusyError(`subscription ${this.name} is closing`);
    if (this.consumers.length > 0 && this.type !== type) {
      throw new ConsumerBusyError(`subscription ${this.name} is ${this.type}; cannot attach a ${type} consumer`);
    }
    if (type === 'EXCLUSIVE_SUB' && this.consumers.length > 0) {
      throw new ConsumerBusyError(`exclusive subscription ${this.name} already has a consumer`);
    }
    if (type === 'KEY_SHARED_SUB' && consumer.stickyRanges.length > 0) this.checkStickyRanges(consumer);
    this.type = type;
    this.consumers.push(consumer);
    this.rebuildRing();
    this.updateActive();
    this.unparkFree();
    this.schedule();
  }

  /** Detaches a consumer; its unacked entries are redelivered to the others. */
  removeConsumer(consumer: Consumer): void {
    const i = this.consumers.indexOf(consumer);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    this.handBack(consumer, [...consumer.pending.keys()]);
    this.rebuildRing();
    this.updateActive();
    this.unparkFree();
    if (this.consumers.length === 0 && !this.durable) this.onEmpty(this);
    this.schedule();
  }

  flow(consumer: Consumer, permits: number): void {
    if (!Number.isInteger(permits) || permits < 0) throw new InvalidRequestError(`bad permits ${permits}`);
    consumer.permits = Math.min(consumer.permits + permits, 1_000_000);
    this.unparkFree();
    this.schedule();
  }

  /**
   * Batch index acks: the messages are remembered per entry (and in the cursor's properties); the entry
   * is acked as a whole once all its messages are. Redeliveries of the entry name what is acked already.
   */
  async ackBatchIndexes(consumer: Consumer, acks: readonly BatchIndexAck[]): Promise<void> {
    const complete: Position[] = [];
    for (const a of acks) {
      if (!Number.isInteger(a.size) || a.size < 1 || a.size > MAX_BATCH_SIZE || !Number.isInteger(a.index) || a.index < 0 || a.index >= a.size) {
        throw new InvalidRequestError(`bad batch index ack ${a.index} of a batch of ${a.size}`);
      }
      if (this.cursor.isAcked(a.position)) continue;
      const k = key(a.position);
      let entry = this.batchAcks.get(k);
      if (!entry) {
        if (this.batchAcks.size >= MAX_PARTIAL_BATCH_ACKS) this.batchAcks.delete(this.batchAcks.keys().next().value!);
        entry = { position: a.position, size: a.size, acked: new Set() };
        this.batchAcks.set(k, entry);
      }
      entry.acked.add(a.index);
      if (entry.acked.size >= entry.size) complete.push(a.position);
    }
    if (complete.length > 0) await this.ack(consumer, complete, false);
    else await this.persistBatchAcks();
  }

  private async persistBatchAcks(): Promise<void> {
    if (!this.durable) return;
    const kept: Record<string, [number, number[]]> = {};
    let n = 0;
    for (const [k, e] of this.batchAcks) {
      if (n++ >= MAX_PERSISTED_BATCH_ACKS) break;
      kept[k] = [e.size, [...e.acked]];
    }
    const value = n === 0 ? undefined : JSON.stringify(kept);
    if (value === this.cursor.properties[BATCH_ACKS_PROPERTY]) return;
    const { [BATCH_ACKS_PROPERTY]: _old, ...rest } = this.cursor.properties;
    await this.cursor.setProperties(value === undefined ? rest : { ...rest, [BATCH_ACKS_PROPERTY]: value });
  }

  async ack(consumer: Consumer, positions: Position[], cumulative: boolean): Promise<void> {
    if (positions.length === 0) return;
    if (cumulative) {
      if (this.type === 'SHARED_SUB' || this.type === 'KEY_SHARED_SUB') {
        throw new InvalidRequestError(`cumulative ack is not allowed on a ${this.type} subscription`);
      }
      await this.ackUpTo(positions.reduce((a, b) => (comparePositions(a, b) >= 0 ? a : b)));
    } else {
      for (const p of positions) {
        const k = key(p);
        const holder = consumer.pending.has(k) ? consumer : this.consumers.find((c) => c.pending.has(k));
        if (holder) this.release(holder, k);
        this.redeliver.delete(k);
        this.nacked.delete(k);
        this.redeliveryCounts.delete(k);
        this.batchAcks.delete(k);
      }
      await this.cursor.ackIndividual(positions);
    }
    if (this.batchAcks.size > 0 || this.cursor.properties[BATCH_ACKS_PROPERTY] !== undefined) await this.persistBatchAcks();
    // An ack may unblock a Key_Shared hash.
    this.schedule();
  }

  /**
   * Admin (Pulsar's expire and skip): moves the mark-delete position forward to `upTo`, never back,
   * keeping the individual acks after it; deliveries at or before it are released.
   */
  async markDeleteUpTo(upTo: Position): Promise<void> {
    await this.ackUpTo(upTo);
    this.schedule();
  }

  /** A cumulative ack up to `upTo`, whoever asks: forget what it covers, then move the cursor. */
  private async ackUpTo(upTo: Position): Promise<void> {
    for (const c of this.consumers) {
      for (const [k, p] of c.pending) if (comparePositions(p.position, upTo) <= 0) this.release(c, k);
    }
    for (const [k, p] of this.redeliver) if (comparePositions(p, upTo) <= 0) this.redeliver.delete(k);
    for (const [k, n] of this.nacked) if (comparePositions(n.position, upTo) <= 0) this.nacked.delete(k);
    for (const k of this.redeliveryCounts.keys()) if (this.redeliver.has(k) === false && !this.isPendingAnywhere(k)) this.redeliveryCounts.delete(k);
    for (const [k, e] of this.batchAcks) if (comparePositions(e.position, upTo) <= 0) this.batchAcks.delete(k);
    await this.cursor.ackCumulative(upTo);
  }

  /**
   * Resolves once the cursor state that includes these (already applied) acks is persisted: the ack
   * receipt of Ack.durable. A flush in progress may predate them, so this waits for it and then for
   * the next one (Cursor.flush coalesces concurrent callers). Rejects with AckNotDurableError when an
   * individually acked position lies above the persisted ranges (maxAckedRangesPersisted), since a
   * crash would bring it back; with the fencing error when another broker took the topic.
   */
  async persistAcks(positions: Position[], cumulative: boolean): Promise<void> {
    if (!this.cursor.durable || positions.length === 0) return;
    await this.cursor.flush();
    const notPersisted = this.cursor.stats().ackedRangesNotPersisted;
    if (cumulative || notPersisted === 0) return;
    const ranges = this.cursor.ackedRanges();
    const persisted = ranges.slice(0, Math.max(0, ranges.length - notPersisted));
    const md = this.cursor.markDeletePosition;
    for (const p of positions) {
      if (comparePositions(p, md) <= 0) continue;
      const inside = persisted.some((r) => comparePositions(r.from, p) <= 0 && comparePositions(p, r.to) <= 0);
      if (!inside) throw new AckNotDurableError(`ack of ${p.ledgerId}:${p.entryId} is above the ${persisted.length} individually acked ranges persisted; acknowledge the earlier messages first`);
    }
  }

  /** Negative ack: redeliver these entries after the consumer's nack delay. */
  nack(consumer: Consumer, positions: Position[]): void {
    const due = this.options.clock.now() + consumer.nackDelayMs;
    for (const p of positions) {
      const k = key(p);
      if (!consumer.pending.has(k)) continue;
      this.release(consumer, k);
      this.nacked.set(k, { position: p, dueMs: due, counted: true });
    }
    // Bound: too many delayed nacks are redelivered early rather than held.
    while (this.nacked.size > this.options.maxRedeliveryPositions) {
      const [k, n] = this.nacked.entries().next().value as [string, { position: Position; counted: boolean }];
      this.nacked.delete(k);
      if (n.counted) this.queueRedelivery(k, n.position);
      else this.redeliver.set(k, n.position);
    }
    this.armNackTimer();
  }

  /** Hands back the consumer's unacked entries (all when `positions` is empty) for redelivery now. */
  redeliverUnacknowledged(consumer: Consumer, positions: Position[]): void {
    const keys = positions.length === 0 ? [...consumer.pending.keys()] : positions.map(key).filter((k) => consumer.pending.has(k));
    this.handBack(consumer, keys);
    this.schedule();
  }

  /**
   * Resets the cursor (seek). Everything delivered and not acked is forgotten: the cursor now decides
   * what comes next. Consumers keep their streams; a client drops what it buffered before the answer.
   */
  async seek(target: Position | InitialPosition): Promise<Position> {
    // No dispatch pass may run between forgetting the old state and the cursor reset.
    this.seeking = true;
    try {
      await this.waitIdle();
      this.buffer = [];
      this.redeliver.clear();
      this.redeliveryCounts.clear();
      this.nacked.clear();
      this.hashHolders.clear();
      this.parked.clear();
      this.parkedCount = 0;
      for (const c of this.consumers) c.pending.clear();
      await this.cursor.resetTo(target);
    } finally {
      this.seeking = false;
    }
    const next = this.cursor.readPosition;
    this.schedule();
    return next;
  }

  /** Stops dispatching; consumers get `closed(reason)`. Closes (never deletes) the cursor unless told not to. */
  async close(reason: string, options: { closeCursor?: boolean; redirectBrokerUrl?: string } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort(new Error(reason));
    if (this.nackTimer) clearTimeout(this.nackTimer);
    if (this.rateTimer) clearTimeout(this.rateTimer);
    for (const c of [...this.consumers]) c.sink.closed(reason, options.redirectBrokerUrl);
    this.consumers.length = 0;
    await this.waitIdle();
    if (options.closeCursor === false) return;
    await this.cursor.close().catch((err: unknown) => this.logger.warn({ err }, 'cursor close failed'));
  }

  unackedCount(): number {
    return this.consumers.reduce((n, c) => n + c.pending.size, 0);
  }

  // ---- dispatch ----

  /** Requests a dispatch pass; passes never overlap. */
  schedule(): void {
    if (this.closed || this.seeking) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.dispatchLoop()
      .catch((err: unknown) => {
        if (!this.closed) this.logger.warn({ err }, 'dispatch failed; retrying in 1 s');
        if (!this.closed) setTimeout(() => this.schedule(), 1000).unref();
      })
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.schedule();
        }
      });
  }

  private async waitIdle(): Promise<void> {
    while (this.running) await new Promise((r) => setTimeout(r, 2));
  }

  private async dispatchLoop(): Promise<void> {
    for (let pass = 0; !this.closed && !this.seeking; pass++) {
      if (pass === 100) {
        // Yield to I/O on a long run; the next pass continues from where this one stopped.
        setImmediate(() => this.schedule());
        return;
      }
      this.again = false;
      let progress = await this.loadRedeliveries();
      const wanted = Math.min(this.readableRoom(), this.wantedEntries());
      let readNothing = false;
      if (wanted > 0) {
        const entries = await this.cursor.read({ maxEntries: wanted, maxBytes: this.options.readMaxBytes, signal: this.abort.signal });
        if (entries.length > 0) {
          progress = true;
          for (const e of entries) this.insert(this.toDispatch(e));
        } else {
          readNothing = true;
        }
      }
      if (this.dispatchBuffer()) progress = true;
      if (readNothing) this.waitForNewEntries();
      if (!progress && !this.again) return;
    }
  }

  /** Room in the buffer for new reads: none while redeliveries wait (they go first). */
  private readableRoom(): number {
    if (this.redeliver.size > 0) return 0;
    return Math.max(0, this.options.readAheadEntries - this.buffer.length);
  }

  /** How many new entries the consumers could take now. */
  private wantedEntries(): number {
    if (this.consumers.length === 0) return 0;
    if (this.type === 'EXCLUSIVE_SUB' || this.type === 'FAILOVER_SUB') {
      const active = this.consumers.find((c) => c.isActive);
      return Math.max(0, (active?.permits ?? 0) - this.buffer.length);
    }
    const total = this.consumers.reduce((n, c) => n + c.permits, 0);
    return Math.max(0, total - this.buffer.length);
  }

  private waitForNewEntries(): void {
    if (this.waiting || this.closed) return;
    this.waiting = true;
    // Waits from the cursor's read position: an append landing between the empty read and this call
    // is then seen at once instead of waited past.
    this.cursor.waitForEntries({ signal: this.abort.signal }).then(
      () => {
        this.waiting = false;
        this.schedule();
      },
      (err: unknown) => {
        this.waiting = false;
        if (!this.closed) this.logger.debug({ err }, 'wait for entries ended');
      },
    );
  }

  private async loadRedeliveries(): Promise<boolean> {
    if (this.redeliver.size === 0) return false;
    const room = Math.max(1, this.options.readAheadEntries - this.buffer.length);
    const positions = [...this.redeliver.values()].sort(comparePositions).slice(0, room);
    for (const p of positions) this.redeliver.delete(key(p));
    const entries = await this.ml.readPositions(positions, { signal: this.abort.signal });
    for (const e of entries) {
      if (this.cursor.isAcked(e.position)) continue;
      const d = this.toDispatch(e);
      d.redeliveryCount = this.redeliveryCounts.get(key(e.position)) ?? 0;
      this.insert(d);
    }
    return positions.length > 0;
  }

  private toDispatch(e: Entry): DispatchEntry {
    const envelope = decodeEnvelope(e.payload);
    const acked = this.batchAcks.get(key(e.position))?.acked;
    return {
      position: e.position, envelope, size: e.payload.length,
      keyHash: keyHashOf(envelope.metadata?.batchKey ?? ''), redeliveryCount: this.redeliveryCounts.get(key(e.position)) ?? 0,
      ...(acked ? { ackedBatchIndexes: [...acked] } : {}),
    };
  }

  /** Keeps the buffer in position order (redeliveries slot in before newer entries). */
  private insert(d: DispatchEntry): void {
    const b = this.buffer;
    if (b.length === 0 || comparePositions((b[b.length - 1] as DispatchEntry).position, d.position) < 0) {
      b.push(d);
      return;
    }
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (comparePositions((b[mid] as DispatchEntry).position, d.position) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (b[lo] && comparePositions((b[lo] as DispatchEntry).position, d.position) === 0) return;
    b.splice(lo, 0, d);
  }

  /** Hands buffered entries to consumers; returns whether anything was sent. */
  /** Dispatch is held back by the rate limit: dispatch again once its debt is paid. */
  private rateLimited(): boolean {
    const wait = this.dispatchRate.waitMs();
    if (wait <= 0) return false;
    if (!this.rateTimer && !this.closed) {
      this.rateTimer = setTimeout(() => {
        this.rateTimer = undefined;
        this.schedule();
      }, wait);
    }
    return true;
  }

  private dispatchBuffer(): boolean {
    if (this.buffer.length === 0 || this.consumers.length === 0) return false;
    if (this.rateLimited()) return false;
    // Entries after a position still waiting to be re-read must wait for it (keeps order).
    const firstWaiting = [...this.redeliver.values()].reduce<Position | undefined>(
      (m, p) => (m === undefined || comparePositions(p, m) < 0 ? p : m), undefined);
    const out = new Map<Consumer, DispatchEntry[]>();
    const now = this.options.clock.now();
    const blocked = new Set<number>();
    const remaining: DispatchEntry[] = [];
    let sent = false;
    for (let i = 0; i < this.buffer.length; i++) {
      const e = this.buffer[i] as DispatchEntry;
      if (this.cursor.isAcked(e.position)) continue;
      if (this.type === 'SHARED_SUB' && this.delayUntil(e, now)) continue;
      if (firstWaiting && comparePositions(e.position, firstWaiting) > 0) {
        remaining.push(e);
        continue;
      }
      const c = this.pick(e, blocked);
      if (!c) {
        remaining.push(e);
        if (this.type !== 'KEY_SHARED_SUB' && !this.consumers.some((x) => x.permits > 0)) {
          for (let j = i + 1; j < this.buffer.length; j++) remaining.push(this.buffer[j] as DispatchEntry);
          break;
        }
        continue;
      }
      c.permits--;
      c.pending.set(key(e.position), { position: e.position, keyHash: e.keyHash });
      if (this.type === 'KEY_SHARED_SUB') {
        const h = this.hashHolders.get(e.keyHash);
        if (h) h.count++;
        else this.hashHolders.set(e.keyHash, { consumer: c, count: 1 });
      }
      let list = out.get(c);
      if (!list) out.set(c, (list = []));
      list.push(e);
      sent = true;
      if (this.dispatchRate.charge(e.envelope.metadata?.numMessages ?? 1, e.size) > 0) {
        // Over the rate: the rest waits in the buffer (and so does reading) until the debt is paid.
        for (let j = i + 1; j < this.buffer.length; j++) remaining.push(this.buffer[j] as DispatchEntry);
        this.rateLimited();
        break;
      }
    }
    this.buffer = remaining;
    if (this.type === 'KEY_SHARED_SUB' && remaining.length >= this.options.readAheadEntries) this.park(blocked);
    for (const [c, entries] of out) {
      const msgs = entries.reduce((n, e) => n + (e.envelope.metadata?.numMessages ?? 1), 0);
      const bytes = entries.reduce((n, e) => n + e.size, 0);
      c.rateOut.record(msgs, bytes);
      this.rateOut.record(msgs, bytes);
      const m = this.options.metrics;
      if (m) {
        m.dispatchedEntries.inc(entries.length);
        m.dispatchedBytes.inc(bytes);
        const again = entries.filter((e) => e.redeliveryCount > 0).length;
        if (again > 0) m.redeliveries.inc(again);
      }
      c.sink.deliver(entries);
    }
    return sent;
  }

  private pick(e: DispatchEntry, blocked: Set<number>): Consumer | undefined {
    switch (this.type) {
      case 'EXCLUSIVE_SUB':
      case 'FAILOVER_SUB': {
        const active = this.consumers.find((c) => c.isActive);
        return active && active.permits > 0 ? active : undefined;
      }
      case 'SHARED_SUB': {
        // Round-robin among the consumers of the best (lowest) priority level that have permits.
        let best = Infinity;
        for (const c of this.consumers) if (c.permits > 0 && c.priority < best) best = c.priority;
        const n = this.consumers.length;
        for (let i = 0; i < n; i++) {
          const c = this.consumers[(this.rrIndex + i) % n] as Consumer;
          if (c.permits > 0 && c.priority === best) {
            this.rrIndex = (this.rrIndex + i + 1) % n;
            return c;
          }
        }
        return undefined;
      }
      case 'KEY_SHARED_SUB': {
        if (blocked.has(e.keyHash) || this.parked.has(e.keyHash)) {
          blocked.add(e.keyHash);
          return undefined;
        }
        const target = this.consumerForHash(e.keyHash);
        const holder = this.hashHolders.get(e.keyHash);
        if (!target || target.permits <= 0 || (holder && holder.consumer !== target)) {
          // Later entries of this hash must not overtake this one.
          blocked.add(e.keyHash);
          return undefined;
        }
        return target;
      }
      default:
        return undefined;
    }
  }

  private consumerForHash(hash: number): Consumer | undefined {
    const sticky = this.consumers.filter((c) => c.stickyRanges.length > 0);
    if (sticky.length > 0) return sticky.find((c) => c.stickyRanges.some((r) => hash >= r.start && hash <= r.end));
    if (this.ring.length === 0) return undefined;
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ring[mid] as { point: number }).point < hash) lo = mid + 1;
      else hi = mid;
    }
    return (this.ring[lo % this.ring.length] as { consumer: Consumer }).consumer;
  }

  private rebuildRing(): void {
    if (this.type !== 'KEY_SHARED_SUB') {
      this.ring = [];
      return;
    }
    const ring: Array<{ point: number; consumer: Consumer }> = [];
    for (const c of this.consumers) {
      for (let i = 0; i < RING_POINTS; i++) ring.push({ point: keyHashOf(`${c.name}#${c.id}#${i}`), consumer: c });
    }
    ring.sort((a, b) => a.point - b.point || a.consumer.id - b.consumer.id);
    this.ring = ring;
  }

  private checkStickyRanges(consumer: Consumer): void {
    for (const r of consumer.stickyRanges) {
      if (r.start > r.end || r.end >= KEY_HASH_SLOTS) throw new InvalidRequestError(`bad hash range ${r.start}..${r.end} (0..${KEY_HASH_SLOTS - 1})`);
      for (const c of this.consumers) {
        for (const o of c.stickyRanges) {
          if (r.start <= o.end && o.start <= r.end) throw new ConsumerBusyError(`hash range ${r.start}..${r.end} overlaps consumer ${c.name}`);
        }
      }
    }
  }

  /**
   * Delayed delivery (Shared only, as in Pulsar): an entry whose deliver_at_time is in the future
   * waits in the timed map (positions only) instead of the buffer; true when it was moved there. When
   * that map is full the entry stays in the buffer (reads then pause) rather than go out early.
   */
  private delayUntil(e: DispatchEntry, now: number): boolean {
    if (!this.delayedDelivery) return false;
    const at = Number(e.envelope.metadata?.deliverAtTime ?? 0);
    if (!(at > now)) return false;
    if (this.nacked.size >= this.options.maxRedeliveryPositions) return false;
    this.nacked.set(key(e.position), { position: e.position, dueMs: at, counted: false });
    this.armNackTimer();
    return true;
  }

  /** Exclusive/Failover: picks the active consumer and tells consumers whose state changed. */
  private updateActive(): void {
    if (this.type !== 'FAILOVER_SUB' && this.type !== 'EXCLUSIVE_SUB') {
      for (const c of this.consumers) c.isActive = true;
      return;
    }
    let active: Consumer | undefined;
    if (this.consumers.length > 0) {
      const sorted = [...this.consumers].sort((a, b) => a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id - b.id));
      const top = sorted.filter((c) => c.priority === (sorted[0] as Consumer).priority);
      // Partitions spread over the top-priority consumers, as Pulsar does.
      active = this.options.partitionIndex >= 0 ? top[this.options.partitionIndex % top.length] : top[0];
    }
    for (const c of this.consumers) {
      const was = c.isActive;
      c.isActive = c === active;
      if (was && !c.isActive) {
        // Its unacked entries go to the new active consumer.
        this.handBack(c, [...c.pending.keys()]);
      }
      if (was !== c.isActive && this.type === 'FAILOVER_SUB') c.sink.activeChange(c.isActive);
    }
  }

  private handBack(consumer: Consumer, keys: string[]): void {
    for (const k of keys) {
      const p = consumer.pending.get(k);
      if (!p) continue;
      this.release(consumer, k);
      this.queueRedelivery(k, p.position);
    }
  }

  /** Every way back (nack, redeliver request, consumer gone) counts as one redelivery, as in Pulsar. */
  private queueRedelivery(k: string, p: Position): void {
    this.redeliveryCounts.set(k, (this.redeliveryCounts.get(k) ?? 0) + 1);
    this.redeliver.set(k, p);
  }

  private release(consumer: Consumer, k: string): void {
    const p = consumer.pending.get(k);
    if (!p) return;
    consumer.pending.delete(k);
    const h = this.hashHolders.get(p.keyHash);
    if (h && h.consumer === consumer && --h.count <= 0) {
      this.hashHolders.delete(p.keyHash);
      this.unpark(p.keyHash);
    }
  }

  /** Moves blocked entries of a full buffer out to `parked` (positions only), within the bound. */
  private park(blocked: Set<number>): void {
    const keep: DispatchEntry[] = [];
    for (const e of this.buffer) {
      if (blocked.has(e.keyHash) && this.parkedCount < this.options.maxRedeliveryPositions) {
        let list = this.parked.get(e.keyHash);
        if (!list) this.parked.set(e.keyHash, (list = []));
        list.push(e.position);
        this.parkedCount++;
        if (e.redeliveryCount > 0) this.redeliveryCounts.set(key(e.position), e.redeliveryCount);
      } else {
        keep.push(e);
      }
    }
    this.buffer = keep;
  }

  private unpark(hash: number): void {
    const list = this.parked.get(hash);
    if (!list) return;
    this.parked.delete(hash);
    this.parkedCount -= list.length;
    for (const p of list) this.redeliver.set(key(p), p);
  }

  /** After consumers or permits change: parked hashes that nobody holds may flow again. */
  private unparkFree(): void {
    for (const hash of [...this.parked.keys()]) if (!this.hashHolders.has(hash)) this.unpark(hash);
  }

  private isPendingAnywhere(k: string): boolean {
    return this.consumers.some((c) => c.pending.has(k)) || this.nacked.has(k);
  }

  /** One timer for the earliest due entry; re-armed when an earlier one arrives. */
  private armNackTimer(): void {
    if (this.nacked.size === 0 || this.closed) return;
    let due = Infinity;
    for (const n of this.nacked.values()) due = Math.min(due, n.dueMs);
    if (this.nackTimer && this.nackTimerDueMs <= due) return;
    if (this.nackTimer) clearTimeout(this.nackTimer);
    this.nackTimerDueMs = due;
    // Timers cap at 2^31-1 ms; a later wake-up just re-arms.
    const delay = Math.min(0x7fffffff, Math.max(0, due - this.options.clock.now()));
    this.nackTimer = setTimeout(() => {
      this.nackTimer = undefined;
      this.nackTimerDueMs = Infinity;
      const now = this.options.clock.now();
      for (const [k, n] of this.nacked) {
        if (n.dueMs <= now) {
          this.nacked.delete(k);
          if (n.counted) this.queueRedelivery(k, n.position);
          else this.redeliver.set(k, n.position);
        }
      }
      this.armNackTimer();
      this.schedule();
    }, delay);
    this.nackTimer.unref();
  }
}

/** Batch index acks as the cursor's properties keep them; a value that does not parse is dropped. */
function loadBatchAcks(stored: string | undefined): Map<string, { position: Position; size: number; acked: Set<number> }> {
  const out = new Map<string, { position: Position; size: number; acked: Set<number> }>();
  if (!stored) return out;
  try {
    for (const [k, [size, acked]] of Object.entries(JSON.parse(stored) as Record<string, [number, number[]]>)) {
      const [ledgerId, entryId] = k.split(':').map(Number) as [number, number];
      if (Number.isInteger(ledgerId) && Number.isInteger(entryId)) out.set(k, { position: { ledgerId, entryId }, size, acked: new Set(acked) });
    }
  } catch {
    // Unreadable: those batches come back whole (at least once).
  }
  return out;
}
