import { randomBytes } from 'node:crypto';
import type { ClientContext } from './context.js';
import { abortError, ClientErrorCode, configError, fromGrpcError, operationError, unsupportedOption } from './errors.js';
import type { Logger } from './logger.js';
import { Message, MessageId } from './message.js';
import { CONSUMER_LIMITS } from './consumer/config.js';
import type { ReceiveOptions } from './consumer/receiver-queue.js';
import { dropMessage, takeMessage, TopicConsumer, type MessageSink } from './consumer/topic-consumer.js';
import { fullTopicName, partitionTopicName } from './topic.js';
import { MessageWaiters, Queue } from './util.js';

/** pulsar-client's ReaderConfig, restricted to what Strata supports (others are rejected). */
export interface ReaderConfig {
  topic: string;
  /** MessageId.earliest(), MessageId.latest() or a stored id (the reader starts after it). */
  startMessageId: MessageId;
  /** Entries buffered per partition. Default 1000. */
  receiverQueueSize?: number;
  readerName?: string;
  subscriptionRolePrefix?: string;
  listener?: (message: Message, reader: Reader) => void | Promise<void>;
}

const SUPPORTED = new Set(['topic', 'startMessageId', 'receiverQueueSize', 'readerName', 'subscriptionRolePrefix', 'listener']);
const KNOWN_UNSUPPORTED: Record<string, string> = {
  readCompacted: 'Strata has no topic compaction yet',
  privateKeyPath: 'Strata has no end-to-end encryption',
  cryptoFailureAction: 'Strata has no end-to-end encryption',
};

/**
 * Reads a topic from a position without a durable subscription (a non-durable cursor that lives as
 * long as the reader). After a reconnect it resumes after the last entry it received.
 */
export class Reader implements MessageSink, AsyncIterable<Message> {
  readonly #tcs: TopicConsumer[] = [];
  readonly #queue = new Queue<Message>();
  readonly #log: Logger;
  readonly #onClose: (r: Reader) => void;
  readonly #ctx: ClientContext;
  readonly #waiters = new MessageWaiters<Message>();
  #closed = false;
  /** Per topic consumer: last entry id of the topic as last fetched, and where this reader stands. */
  readonly #last = new Map<TopicConsumer, MessageId>();
  readonly #position = new Map<TopicConsumer, MessageId>();
  /** After a seek by timestamp, until a message is taken: the entry read next (inclusive). */
  readonly #nextAt = new Map<TopicConsumer, MessageId>();
  #refreshing: Promise<void> | undefined;
  #listenerLoop: Promise<void> | undefined;

  private constructor(ctx: ClientContext, onClose: (r: Reader) => void) {
    this.#ctx = ctx;
    this.#log = ctx.logger.child({ component: 'reader' });
    this.#onClose = onClose;
  }

  /** @internal use Client.createReader. */
  static async create(ctx: ClientContext, config: ReaderConfig, partitions: (topic: string) => Promise<number>, onClose: (r: Reader) => void): Promise<Reader> {
    if (typeof config !== 'object' || config === null) throw configError('Reader config must be an object');
    const c = config as unknown as Record<string, unknown>;
    for (const key of Object.keys(c)) {
      if (c[key] === undefined || SUPPORTED.has(key)) continue;
      throw unsupportedOption('Reader', key, KNOWN_UNSUPPORTED[key] ?? 'unknown option');
    }
    if (typeof config.topic !== 'string' || config.topic === '') throw configError('Topic is required and must be specified as a string when creating reader');
    const topic = fullTopicName(config.topic);
    const start = config.startMessageId;
    if (!(start instanceof MessageId)) throw configError('StartMessageId is required and must be specified as a MessageId object when creating reader');
    const queue = config.receiverQueueSize ?? 1000;
    if (!Number.isInteger(queue) || queue < 1 || queue > CONSUMER_LIMITS.receiverQueueSize) throw configError(`receiverQueueSize must be an integer in [1, ${CONSUMER_LIMITS.receiverQueueSize}]`);
    if (config.listener !== undefined && typeof config.listener !== 'function') throw configError('listener must be a function');
    const reader = new Reader(ctx, onClose);
    try {
      const n = await partitions(topic);
      if (n > 0 && !start.isEarliest() && !start.isLatest() && start.partition < 0) {
        throw configError('a reader on a partitioned topic starts at MessageId.earliest(), MessageId.latest() or an id of one of its partitions');
      }
      const spec = {
        subscription: readerSubscriptionName(config.subscriptionRolePrefix),
        type: 'EXCLUSIVE_SUB' as const,
        initialPosition: start.isLatest() ? 'LATEST' as const : 'EARLIEST' as const,
        consumerName: config.readerName ?? '',
        durable: false,
        startMessageId: start.isEarliest() || start.isLatest() ? undefined : start,
        receiverQueueSize: queue,
        nAckRedeliverTimeoutMs: 0,
        properties: {},
        keyShared: undefined,
        maxRedeliverCount: undefined,
        batchIndexAck: false,
      };
      const tcs = n === 0 ? [new TopicConsumer(ctx, spec, reader, topic, -1)]
        : Array.from({ length: n }, (_, i) => new TopicConsumer(ctx, { ...spec, startMessageId: start.partition === i ? start : undefined }, reader, partitionTopicName(topic, i), i));
      reader.#tcs.push(...tcs);
      const results = await Promise.allSettled(tcs.map((tc) => tc.start()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      // Where each partition's reading starts, for hasNext(): a stored id, or the topic's end for latest.
      await Promise.all(tcs.map(async (tc) => {
        const last = await tc.lastMessageId().catch(() => MessageId.earliest());
        reader.#last.set(tc, last);
        if (!reader.#position.has(tc)) {
          reader.#position.set(tc, start.isLatest() ? last : spec.startMessageId && tc.partition === start.partition ? start : MessageId.earliest());
        }
      }));
    } catch (err) {
      await reader.close();
      throw fromGrpcError(err).withContext('Failed to create reader');
    }
    if (config.listener) reader.#listenerLoop = reader.#runListener(config.listener);
    return reader;
  }

  deliver(_tc: TopicConsumer, messages: Message[]): void {
    for (const m of messages) {
      const w = this.#waiters.shift();
      if (w) {
        this.#take(m);
        w.resolve(m);
      } else {
        this.#queue.push(m);
      }
    }
  }

  deadLetter(tc: TopicConsumer): void {
    tc.consumed(); // readers have no dead-letter policy
  }

  purge(tc: TopicConsumer): void {
    for (const m of this.#queue.filter((m) => m.getMessageId().topic !== tc.topic)) dropMessage(m);
  }

  #take(m: Message): void {
    const tc = takeMessage(m);
    if (tc) {
      this.#position.set(tc, m.getMessageId());
      this.#nextAt.delete(tc);
    }
  }

  /** The next message; `Failed to receive message: TimeOut` after `timeout` ms if given. */
  readNext(timeout?: number, options?: ReceiveOptions): Promise<Message> {
    const op = 'Failed to receive message';
    if (this.#closed) return Promise.reject(operationError(op, ClientErrorCode.ALREADY_CLOSED));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal, op));
    const m = this.#queue.shift();
    if (m) {
      this.#take(m);
      return Promise.resolve(m);
    }
    return this.#waiters.wait(op, timeout, signal);
  }

  /**
   * Whether a message is ready or known to exist after the reader's position. Synchronous like
   * pulsar-client's: it answers from the last known end of the topic, which it refreshes in the
   * background on each call (hasMessageAvailable() waits for a fresh answer).
   */
  hasNext(): boolean {
    if (this.#closed) return false;
    this.#refresh();
    return this.#known();
  }

  /** Like hasNext(), after asking the broker where the topic ends (Strata extension). */
  async hasMessageAvailable(): Promise<boolean> {
    if (this.#closed) return false;
    this.#refresh();
    await this.#refreshing;
    return this.#known();
  }

  #known(): boolean {
    if (this.#queue.length > 0) return true;
    for (const tc of this.#tcs) {
      const pos = this.#position.get(tc);
      const nextAt = pos ? undefined : this.#nextAt.get(tc);
      for (const last of [this.#last.get(tc), this.#ctx.published.get(tc.topic)]) {
        if (!last || last.ledgerId < 0) continue;
        if (nextAt) {
          if (last.ledgerId > nextAt.ledgerId || (last.ledgerId === nextAt.ledgerId && last.entryId >= nextAt.entryId)) return true;
        } else if (!pos || last.ledgerId > pos.ledgerId || (last.ledgerId === pos.ledgerId && last.entryId > pos.entryId)) {
          return true;
        }
      }
    }
    return false;
  }

  #refresh(): void {
    if (this.#refreshing) return;
    this.#refreshing = Promise.all(this.#tcs.map(async (tc) => this.#last.set(tc, await tc.lastMessageId())))
      .then(() => undefined, (err: unknown) => this.#log.debug({ err }, 'cannot refresh the last message id'))
      .finally(() => { this.#refreshing = undefined; });
  }

  isConnected(): boolean {
    return !this.#closed && this.#tcs.length > 0 && this.#tcs.every((tc) => tc.isConnected());
  }

  async seek(messageId: MessageId): Promise<null> {
    if (this.#closed) throw operationError('Failed to seek message by id', ClientErrorCode.ALREADY_CLOSED);
    const targets = this.#tcs.length === 1 || messageId.isEarliest() || messageId.isLatest() ? this.#tcs : this.#tcs.filter((tc) => tc.partition === messageId.partition);
    if (targets.length === 0) throw operationError('Failed to seek message by id', ClientErrorCode.INVALID_ARGUMENT, 'the id is of no partition of this topic');
    await Promise.all(targets.map(async (tc) => {
      await tc.seek({ messageId });
      this.#nextAt.delete(tc);
      this.#position.set(tc, messageId.isLatest() ? await tc.lastMessageId() : messageId);
    }));
    return null;
  }

  async seekTimestamp(timestamp: number): Promise<null> {
    if (this.#closed) throw operationError('Failed to seek message by timestamp', ClientErrorCode.ALREADY_CLOSED);
    await Promise.all(this.#tcs.map(async (tc) => {
      const next = await tc.seek({ timestamp });
      this.#position.delete(tc);
      if (next) this.#nextAt.set(tc, next);
      else this.#nextAt.delete(tc);
    }));
    return null;
  }

  async #runListener(listener: NonNullable<ReaderConfig['listener']>): Promise<void> {
    while (!this.#closed) {
      let m: Message;
      try {
        m = await this.readNext();
      } catch {
        return;
      }
      try {
        await listener(m, this);
      } catch (err) {
        this.#log.error({ err }, 'reader listener threw');
      }
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Message> {
    while (!this.#closed) {
      try {
        yield await this.readNext();
      } catch (err) {
        if (this.#closed) return;
        throw err;
      }
    }
  }

  async close(): Promise<null> {
    if (this.#closed) return null;
    this.#closed = true;
    const err = operationError('Failed to receive message', ClientErrorCode.ALREADY_CLOSED);
    this.#waiters.rejectAll(err);
    await Promise.allSettled(this.#tcs.map((tc) => tc.close()));
    await this.#listenerLoop;
    this.#onClose(this);
    return null;
  }
}

/** A random, unique subscription name for readers. */
function readerSubscriptionName(prefix: string | undefined): string {
  return `${prefix || 'reader'}-${randomBytes(5).toString('hex')}`;
}
