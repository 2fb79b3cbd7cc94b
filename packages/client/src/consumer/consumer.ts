// Invariants: the application sees one Consumer per subscription whatever the topics behind it: every
// message reaches it through the one receiver queue, and every acknowledgement goes back to the topic
// consumer the message came from. Once closed, it stays closed: receivers fail, timers are stopped, and
// close() resolves only after the topic consumers, the dead-letter producer and the listener ended.
import type { ClientContext } from '../context.js';
import { ClientErrorCode, fromGrpcError, operationError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Message, MessageId } from '../message.js';
import type { Producer, ProducerConfig } from '../producer.js';
import { AckTimeouts } from './ack-timeout.js';
import { compileConsumerConfig, type CompiledConsumerConfig, type ConsumerOptions } from './config.js';
import { DeadLetterSender } from './dead-letter.js';
import { MAX_RECONSUME_DELAY_MS, RetryLetterSender } from './retry-letter.js';
import { SubscribedTopics } from './multi-topic.js';
import { ReceiverQueue, type ReceiveOptions } from './receiver-queue.js';
import { dropMessage, takeMessage, type MessageSink, type TopicConsumer } from './topic-consumer.js';

/** pulsar-client's ConsumerConfig, restricted to what Strata supports (others are rejected). */
export interface ConsumerConfig extends ConsumerOptions<Consumer> {
  /** Called with each message instead of receive() (the next one once this one's promise settled). */
  listener?: (message: Message, consumer: Consumer) => void | Promise<void>;
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
  readonly #cfg: CompiledConsumerConfig<Consumer>;
  readonly #log: Logger;
  readonly #onClose: (c: Consumer) => void;
  readonly #topics: SubscribedTopics;
  readonly #queue: ReceiverQueue;
  readonly #ackTimeouts: AckTimeouts;
  readonly #deadLetters: DeadLetterSender | undefined;
  readonly #retries: RetryLetterSender | undefined;
  #closed = false;
  #listenerLoop: Promise<void> | undefined;

  private constructor(ctx: ClientContext, cfg: CompiledConsumerConfig<Consumer>, host: ConsumerHost, onClose: (c: Consumer) => void) {
    this.#cfg = cfg;
    this.#onClose = onClose;
    this.#log = ctx.logger.child({ component: 'consumer', subscription: cfg.subscription });
    this.#topics = new SubscribedTopics(ctx, cfg, {
      subscription: cfg.subscription,
      type: cfg.type,
      initialPosition: cfg.initialPosition,
      consumerName: cfg.consumerName,
      durable: true,
      startMessageId: undefined,
      receiverQueueSize: cfg.receiverQueueSize,
      nAckRedeliverTimeoutMs: cfg.nAckRedeliverTimeoutMs,
      properties: cfg.properties,
      keyShared: cfg.keyShared,
      maxRedeliverCount: cfg.deadLetter?.maxRedeliverCount,
      batchIndexAck: cfg.batchIndexAck,
      ackReceipt: cfg.ackReceipt,
    }, this, host, this.#log);
    this.#queue = new ReceiverQueue(ctx.clock, (m) => this.#handOut(m));
    this.#ackTimeouts = new AckTimeouts(ctx.clock, cfg.ackTimeoutMs, this.#log);
    this.#deadLetters = cfg.deadLetter ? new DeadLetterSender(cfg.deadLetter, host, this.#log) : undefined;
    this.#retries = cfg.retry && this.#deadLetters ? new RetryLetterSender(cfg.retry, this.#deadLetters, (c) => host.createProducer(c)) : undefined;
  }

  /** @internal use Client.subscribe. */
  static async create(ctx: ClientContext, config: ConsumerConfig, host: ConsumerHost, onClose: (c: Consumer) => void): Promise<Consumer> {
    const cfg = compileConsumerConfig(config);
    const consumer = new Consumer(ctx, cfg, host, onClose);
    try {
      await consumer.#topics.start();
    } catch (err) {
      await consumer.#closeAll();
      throw fromGrpcError(err).withContext('Failed to create consumer');
    }
    consumer.#ackTimeouts.start();
    consumer.#topics.startDiscovery();
    if (cfg.listener) consumer.#listenerLoop = consumer.#runListener(cfg.listener);
    return consumer;
  }

  /** The base topics this consumer is subscribed to (Strata extension). */
  getTopics(): string[] {
    return this.#topics.baseTopics();
  }

  // ---- MessageSink ----

  deliver(_tc: TopicConsumer, messages: Message[]): void {
    this.#queue.push(messages);
  }

  deadLetter(tc: TopicConsumer, messages: Message[], entry: MessageId): void {
    this.#deadLetters!.send(tc, messages, entry);
  }

  purge(tc: TopicConsumer): void {
    for (const m of this.#queue.removeTopic(tc.topic)) dropMessage(m);
    this.#ackTimeouts.forget(tc);
  }

  // ---- receiving ----

  #handOut(m: Message): void {
    const tc = takeMessage(m);
    if (tc) this.#ackTimeouts.handedOut(tc, m.getMessageId());
  }

  /**
   * The next message. Rejects with `Failed to receive message: TimeOut` after `timeout` ms (if given
   * and > 0), and with an abort error when `options.signal` aborts.
   */
  receive(timeout?: number, options?: ReceiveOptions): Promise<Message> {
    if (this.#cfg.listener) return Promise.reject(operationError('Failed to receive message', ClientErrorCode.INVALID_CONFIGURATION, 'this consumer has a listener'));
    return this.#queue.receive(timeout, options?.signal);
  }

  /**
   * Up to batchReceivePolicy.maxNumMessages messages (or maxNumBytes), waiting at most timeoutMs
   * for them to arrive; may resolve with fewer, or none.
   */
  async batchReceive(options?: ReceiveOptions): Promise<Message[]> {
    const op = 'Failed to batch receive message';
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    if (this.#cfg.listener) throw operationError(op, ClientErrorCode.INVALID_CONFIGURATION, 'this consumer has a listener');
    return this.#queue.receiveBatch(this.#cfg.batch, options?.signal);
  }

  async #runListener(listener: NonNullable<ConsumerConfig['listener']>): Promise<void> {
    while (!this.#closed) {
      let m: Message;
      try {
        m = await this.#queue.receive(undefined, undefined);
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

  async acknowledge(message: Message): Promise<null> {
    return this.#ack(message?.getMessageId?.(), 'Failed to acknowledge');
  }

  async acknowledgeId(messageId: MessageId): Promise<null> {
    return this.#ack(messageId, 'Failed to acknowledge id');
  }

  async #ack(id: MessageId | undefined, op: string): Promise<null> {
    const tc = this.#topics.route(id as MessageId, op);
    this.#ackTimeouts.settled(tc, id!);
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
    const tc = this.#topics.route(id as MessageId, op);
    this.#ackTimeouts.settledUpTo(tc, id!);
    await tc.acknowledgeCumulative(id!);
    return null;
  }

  /**
   * Pulsar's retry letter topic (needs enableRetry): the message comes back through the retry topic
   * after `delayMs` with RECONSUMETIMES one higher, or goes to the dead-letter topic once that would
   * pass maxRedeliverCount; it is acknowledged here once its copy is stored (so: at least once).
   */
  async reconsumeLater(message: Message, delayMs: number): Promise<null> {
    const op = 'Failed to reconsume message';
    if (!this.#retries) throw operationError(op, ClientErrorCode.INVALID_CONFIGURATION, 'the consumer needs enableRetry: true');
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > MAX_RECONSUME_DELAY_MS) {
      throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, `delay must be an integer in [0, ${MAX_RECONSUME_DELAY_MS}] ms`);
    }
    try {
      await this.#retries.forward(message, delayMs);
    } catch (err) {
      throw fromGrpcError(err).withContext(op);
    }
    return this.#ack(message.getMessageId(), op);
  }

  /** Asks for redelivery after nAckRedeliverTimeoutMs (the whole entry, for a batched message). */
  negativeAcknowledge(message: Message): void {
    this.negativeAcknowledgeId(message.getMessageId());
  }

  negativeAcknowledgeId(messageId: MessageId): void {
    const tc = this.#topics.route(messageId, 'Failed to negatively acknowledge');
    this.#ackTimeouts.settled(tc, messageId);
    tc.negativeAcknowledge([messageId]);
  }

  // ---- position ----

  async seek(messageId: MessageId): Promise<null> {
    const op = 'Failed to seek message by id';
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    const all = this.#topics.all();
    if (all.length === 1 || messageId.isEarliest() || messageId.isLatest()) {
      await Promise.all(all.map((tc) => tc.seek({ messageId })));
    } else {
      await this.#topics.route(messageId, op).seek({ messageId });
    }
    return null;
  }

  async seekTimestamp(timestamp: number): Promise<null> {
    if (this.#closed) throw operationError('Failed to seek message by timestamp', ClientErrorCode.ALREADY_CLOSED);
    if (!Number.isInteger(timestamp) || timestamp < 0) throw operationError('Failed to seek message by timestamp', ClientErrorCode.INVALID_ARGUMENT, 'timestamp must be ms since the epoch');
    await Promise.all(this.#topics.all().map((tc) => tc.seek({ timestamp })));
    return null;
  }

  /** The id of the topic's last stored entry (ledgerId -1 when empty); for a consumer of one topic partition. */
  async getLastMessageId(): Promise<MessageId> {
    const op = 'Failed to get last message id';
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
    const all = this.#topics.all();
    if (all.length !== 1) throw operationError(op, ClientErrorCode.INVALID_ARGUMENT, `this consumer reads ${all.length} topic partitions; ask a reader or consumer of one`);
    try {
      return await all[0]!.lastMessageId();
    } catch (err) {
      throw fromGrpcError(err).withContext(op);
    }
  }

  /** True when every partition's stream is open. */
  isConnected(): boolean {
    const all = this.#topics.all();
    return !this.#closed && all.length > 0 && all.every((tc) => tc.isConnected());
  }

  async unsubscribe(): Promise<null> {
    if (this.#closed) throw operationError('Failed to unsubscribe consumer', ClientErrorCode.ALREADY_CLOSED);
    await Promise.all(this.#topics.all().map((tc) => tc.unsubscribe()));
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
    this.#ackTimeouts.stop();
    this.#queue.close(operationError('Failed to receive message', ClientErrorCode.ALREADY_CLOSED));
    await this.#topics.close();
    await this.#retries?.close();
    await this.#deadLetters?.close();
    await this.#listenerLoop;
    this.#onClose(this);
  }
}
