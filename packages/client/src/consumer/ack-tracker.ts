// Invariants: a batched entry is acknowledged once all its messages are (`#entries`); the broker hears
// of single messages of a batch only with batchIndexAckEnabled (it then keeps them per entry). An
// acknowledgement stays queued until the broker confirmed it, across reconnects (acks are idempotent, so
// sending one twice is harmless, while losing one would redeliver a message the application handled).
import { ClientError, ClientErrorCode, fromGrpcError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { MessageId } from '../message.js';

/** An entry as the broker's Ack command names it. */
export interface WireEntryId {
  ledgerId: number;
  entryId: number;
  batchIndex: number;
  partition: number;
  /** With batchIndex >= 0 (a batch index ack): the messages in the batch. */
  batchSize?: number;
}

/** The topic consumer's stream, as far as acknowledgements need it. */
export interface AckChannel {
  isConnected(): boolean;
  isClosed(): boolean;
  /** Throws when too many requests are outstanding. */
  startRequest(): { id: number; promise: Promise<unknown> };
  /** Only called while connected. */
  writeAck(ack: { messageIds: WireEntryId[]; cumulative: boolean; requestId: number; durable: boolean }): void;
}

interface EntryAcks {
  total: number;
  acked: Set<number>;
}

interface PendingAck {
  id: WireEntryId;
  cumulative: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

/** Batches of acknowledgements sent in one Ack command at most. */
const MAX_ACKS_PER_COMMAND = 1000;

function entryKey(id: MessageId): string {
  return `${id.ledgerId}:${id.entryId}`;
}

/** The acknowledgements of one (partition) topic consumer, from the application's call to the broker's receipt. */
export class AckTracker {
  readonly #partition: number;
  readonly #channel: AckChannel;
  readonly #log: Logger;
  readonly #entries = new Map<string, EntryAcks>();
  #queue: PendingAck[] = [];
  #flushScheduled = false;

  readonly #batchIndexAck: boolean;
  readonly #receipts: boolean;

  /**
   * `batchIndexAck`: batchIndexAckEnabled, an ack of a message of a batch not wholly acked goes to the
   * broker too. `receipts`: ackReceiptEnabled, the broker confirms an ack once it is persisted
   * (Ack.durable). Without batch index acks, the ack of a message of a batch whose other messages are not
   * all acked resolves locally: nothing is sent for it, and the entry's receipt comes with the ack that
   * completes it. Waiting there instead would deadlock the common `await consumer.acknowledge(m)` loop.
   */
  constructor(partition: number, channel: AckChannel, log: Logger, options: { batchIndexAck?: boolean; receipts?: boolean } = {}) {
    this.#partition = partition;
    this.#channel = channel;
    this.#log = log;
    this.#batchIndexAck = options.batchIndexAck ?? false;
    this.#receipts = options.receipts ?? false;
  }

  /**
   * A batched entry of `total` messages was delivered: its acks are counted (across redeliveries too);
   * `ackedBefore` are those the broker already holds batch index acks for (they were not delivered).
   */
  delivered(entry: MessageId, total: number, ackedBefore?: ReadonlySet<number>): void {
    if (total <= 1) return;
    let tracked = this.#entries.get(entryKey(entry));
    if (!tracked) {
      tracked = { total, acked: new Set() };
      this.#entries.set(entryKey(entry), tracked);
    }
    for (const i of ackedBefore ?? []) tracked.acked.add(i);
  }

  /**
   * Individual acknowledgement; resolves once the broker confirmed the entry's ack, or for a message of a
   * batch not wholly acked yet: locally, or with batchIndexAckEnabled once the broker has its batch index ack.
   */
  acknowledge(id: MessageId): Promise<void> {
    const key = entryKey(id);
    const tracked = this.#entries.get(key);
    if (tracked && id.batchIndex >= 0) {
      tracked.acked.add(id.batchIndex);
      if (tracked.acked.size < tracked.total) {
        if (!this.#batchIndexAck) return Promise.resolve();
        return this.#enqueue({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: id.batchIndex, partition: this.#partition, batchSize: tracked.total }, false);
      }
    }
    this.#entries.delete(key);
    return this.#enqueue({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.#partition }, false);
  }

  acknowledgeCumulative(id: MessageId): Promise<void> {
    let target = { ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.#partition };
    if (id.batchIndex >= 0 && id.batchIndex < id.batchSize - 1) {
      // Not the end of its batch: ack the entries before it, and mark this one's head locally.
      const tracked = this.#entries.get(entryKey(id)) ?? { total: id.batchSize, acked: new Set<number>() };
      for (let i = 0; i <= id.batchIndex; i++) tracked.acked.add(i);
      this.#entries.set(entryKey(id), tracked);
      if (id.entryId === 0) return Promise.resolve();
      target = { ...target, entryId: id.entryId - 1 };
    }
    for (const [key] of this.#entries) {
      const [l, e] = key.split(':').map(Number) as [number, number];
      if (l < target.ledgerId || (l === target.ledgerId && e <= target.entryId)) this.#entries.delete(key);
    }
    return this.#enqueue(target, true);
  }

  #enqueue(id: WireEntryId, cumulative: boolean): Promise<void> {
    if (this.#channel.isClosed()) return Promise.reject(new ClientError(ClientErrorCode.ALREADY_CLOSED, 'consumer is closed'));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ id, cumulative, resolve, reject });
      this.flushSoon();
    });
  }

  /** Sends what is queued on the next turn of the event loop (acks of one turn share a command). */
  flushSoon(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.flush();
    });
  }

  /** Sends queued acks (grouped); on a lost connection they are queued again for the next one. */
  flush(): void {
    while (this.#queue.length > 0 && this.#channel.isConnected()) {
      const first = this.#queue[0]!;
      const group: PendingAck[] = [];
      while (group.length < MAX_ACKS_PER_COMMAND && this.#queue.length > 0 && this.#queue[0]!.cumulative === first.cumulative) {
        group.push(this.#queue.shift()!);
        if (first.cumulative) break;
      }
      let req;
      try {
        req = this.#channel.startRequest();
      } catch (err) {
        this.#queue.unshift(...group);
        this.#log.warn({ err }, 'too many outstanding requests; acks wait');
        return;
      }
      this.#channel.writeAck({ messageIds: group.map((a) => a.id), cumulative: first.cumulative, requestId: req.id, durable: this.#receipts });
      req.promise.then(
        () => group.forEach((a) => a.resolve()),
        (err: unknown) => {
          const e = fromGrpcError(err);
          if (e.retriable && !this.#channel.isClosed()) {
            this.#queue.push(...group);
            if (this.#channel.isConnected()) this.flushSoon();
          } else {
            group.forEach((a) => a.reject(e.withContext('Failed to acknowledge')));
          }
        },
      );
    }
  }

  /** After a (re)connect: sends what waited for the stream. */
  resend(): void {
    if (this.#queue.length > 0) this.flushSoon();
  }

  /** The consumer closed: what was never confirmed fails with `err`. */
  rejectAll(err: unknown): void {
    for (const a of this.#queue.splice(0)) a.reject(err);
  }
}
