// Invariants: the broker never has more than receiverQueueSize entries of one topic consumer in flight
// or buffered in its owner's receiver queue, because permits are counted in entries and an entry's permit
// comes back only once every message of it left that queue (`deliveries`): an application that stops
// reading stops the broker sending. One stream at a time: events of an older stream are ignored.
import type * as grpc from '@grpc/grpc-js';
import { decompress } from '../compression.js';
import type { ClientContext } from '../context.js';
import { ClientError, ClientErrorCode, fromGrpcError, fromStreamError, operationError } from '../errors.js';
import type { ConsumerCommand } from '../generated/strata/broker/v1/ConsumerCommand.js';
import type { ConsumerEvent__Output } from '../generated/strata/broker/v1/ConsumerEvent.js';
import type { DeliveredEntry__Output } from '../generated/strata/broker/v1/DeliveredEntry.js';
import { unary } from '../connection.js';
import type { Logger } from '../logger.js';
import { Message, MessageId } from '../message.js';
import { OwnershipWatch } from '../ownership-watch.js';
import { decodeMessageBatch } from '../protocol.js';
import { Backoff, PendingRequests, Reconnection, sleep } from '../util.js';
import { AckTracker } from './ack-tracker.js';
import type { CompiledConsumerConfig } from './config.js';

/** How a topic consumer subscribes: durable consumer or non-durable reader. */
export interface SubscriptionSpec {
  subscription: string;
  type: CompiledConsumerConfig<unknown>['type'];
  initialPosition: 'LATEST' | 'EARLIEST';
  consumerName: string;
  durable: boolean;
  startMessageId: MessageId | undefined;
  receiverQueueSize: number;
  nAckRedeliverTimeoutMs: number;
  properties: Record<string, string>;
  keyShared: CompiledConsumerConfig<unknown>['keyShared'];
  maxRedeliverCount: number | undefined;
  /** Send acks of single messages of a batch to the broker (batchIndexAckEnabled). */
  batchIndexAck: boolean;
  /** ackReceiptEnabled: acks are confirmed once durable on the broker (readers: never). */
  ackReceipt?: boolean;
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

type State = 'connecting' | 'ready' | 'closing' | 'closed';

/**
 * The consumer stream of one (partition) topic: subscribes, grants permits, unpacks entries into
 * messages, and reconnects. Its acknowledgements go through `#acks` (ack-tracker.ts).
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
  readonly #acks: AckTracker;
  readonly #reconnection: Reconnection;
  /** Aborted by close(): ends the reconnection loop's waits at once. */
  readonly #stopped = new AbortController();
  /** Last message the application took: where a reader resumes after a reconnect. */
  #lastTaken: MessageId | undefined;
  /** Where a reader seeked to (resume point until it takes a message). */
  #seekStart: MessageId | undefined;
  #closeWaiter: Promise<void> | undefined;
  /** When the stream last said anything, and since when a request waits (for the ownership watch). */
  #heardAt = 0;
  #waitingSince = 0;
  readonly #watch: OwnershipWatch;

  constructor(ctx: ClientContext, spec: SubscriptionSpec, sink: MessageSink, topic: string, partition: number) {
    this.#ctx = ctx;
    this.#spec = spec;
    this.#sink = sink;
    this.topic = topic;
    this.partition = partition;
    this.#log = ctx.logger.child({ component: 'consumer', topic, subscription: spec.subscription });
    this.#backoff = new Backoff(ctx.initialBackoffMs, ctx.maxBackoffMs, ctx.random);
    this.#reconnection = new Reconnection({
      backoff: this.#backoff,
      signal: this.#stopped.signal,
      stillConnecting: () => this.#state === 'connecting',
      connectOnce: (to) => this.#connectOnce(to),
      onFailure: (err, attempt) => this.#log.warn({ err, attempt }, 'consumer reconnect failed'),
    });
    this.#requests = new PendingRequests(ctx.operationTimeoutMs, () => new ClientError(ClientErrorCode.TIMEOUT, 'no answer from the broker'), 1024);
    this.#acks = new AckTracker(partition, {
      isConnected: () => this.isConnected(),
      isClosed: () => this.isClosed,
      startRequest: () => this.#startRequest(),
      writeAck: (ack) => this.#call!.write({ ack }),
    }, this.#log, { batchIndexAck: spec.batchIndexAck, receipts: spec.ackReceipt ?? false });
    // Requests unanswered (or the stream silent, then the owner probed) past the threshold: if
    // another broker owns the topic now, subscribe there.
    this.#watch = new OwnershipWatch(ctx, topic, {
      owner: () => (this.isConnected() ? this.#ownerAddress : undefined),
      stalledSince: () => (this.#requests.size > 0 ? Math.max(this.#heardAt, this.#waitingSince) : undefined),
      silentSince: () => this.#heardAt,
      moveTo: (address) => {
        const call = this.#call;
        if (call) this.#onStreamEnd(call, new ClientError(ClientErrorCode.UNAVAILABLE, 'moving to the topic\'s new owner'), address);
      },
    }, this.#log);
  }

  #startRequest(): { id: number; promise: Promise<ConsumerEvent__Output> } {
    if (this.#requests.size === 0) this.#waitingSince = this.#ctx.clock.now();
    return this.#requests.start();
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
        this.#watch.start();
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
    this.#ownerAddress = conn.address;
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
      startInclusive = continuesBatch(this.#lastTaken);
    } else if (!this.#spec.durable && this.#seekStart) {
      start = this.#seekStart;
      startInclusive = continuesBatch(this.#seekStart);
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
    this.#heardAt = this.#ctx.clock.now();
    this.#backoff.reset();
    call.write({ flow: { permits: this.#spec.receiverQueueSize } });
    this.#log.info({ broker: conn.address }, 'consumer subscribed');
    this.#acks.resend();
  }

  #onEvent(call: grpc.ClientDuplexStream<ConsumerCommand, ConsumerEvent__Output>, ev: ConsumerEvent__Output): void {
    if (call !== this.#call) return;
    this.#heardAt = this.#ctx.clock.now();
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
    const acked = entry.ackedBatchIndexes?.length ? new Set(entry.ackedBatchIndexes) : undefined;
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
    // And a batch with batch index acks comes without the messages acked already.
    const taken = this.#lastTaken;
    const resumed = !this.#spec.durable && taken && taken.ledgerId === entryId.ledgerId && taken.entryId === entryId.entryId
      ? messages.filter((m) => m.getMessageId().batchIndex > taken.batchIndex)
      : messages;
    const fresh = acked ? resumed.filter((m) => !acked.has(m.getMessageId().batchIndex)) : resumed;
    if (fresh.length === 0) {
      this.consumed();
      return;
    }
    if (this.#spec.maxRedeliverCount !== undefined && entry.redeliveryCount > this.#spec.maxRedeliverCount) {
      this.#sink.deadLetter(this, messages, entryId);
      return;
    }
    this.#acks.delivered(entryId, n, acked);
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
      void this.#reconnection.start(redirect);
    }
  }

  /** Individual acknowledgement; resolves once the broker confirmed the entry's ack (or locally for a partial batch). */
  acknowledge(id: MessageId): Promise<void> {
    return this.#acks.acknowledge(id);
  }

  acknowledgeCumulative(id: MessageId): Promise<void> {
    return this.#acks.acknowledgeCumulative(id);
  }

  negativeAcknowledge(ids: MessageId[]): void {
    if (!this.isConnected()) return; // the broker redelivers everything unacknowledged on reconnect anyway
    this.#call!.write({ nack: { messageIds: ids.map((id) => ({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition })) } });
  }

  redeliver(ids: MessageId[]): void {
    if (!this.isConnected()) return;
    this.#call!.write({ redeliver: { messageIds: ids.map((id) => ({ ledgerId: id.ledgerId, entryId: id.entryId, batchIndex: -1, partition: this.partition })) } });
  }

  async #request(command: ConsumerCommand, op: string): Promise<ConsumerEvent__Output> {
    if (!this.isConnected()) throw operationError(op, this.isClosed ? ClientErrorCode.ALREADY_CLOSED : ClientErrorCode.UNAVAILABLE, 'not connected');
    const { id, promise } = this.#startRequest();
    const key = Object.keys(command)[0] as keyof ConsumerCommand;
    this.#call!.write({ [key]: { ...(command[key] as object), requestId: id } });
    try {
      return await promise;
    } catch (err) {
      throw fromGrpcError(err).withContext(op);
    }
  }

  /** Resolves with the entry the subscription reads next, as the broker answered (undefined from an older broker). */
  async seek(target: { messageId?: MessageId; timestamp?: number }): Promise<MessageId | undefined> {
    const op = target.messageId ? 'Failed to seek message by id' : 'Failed to seek message by timestamp';
    // As pulsar-client, the next message is the one after the id: its entry's next one, or the same
    // entry when the id is a batched message with more after it (the earlier ones come again).
    const id = target.messageId;
    const answer = await this.#request({ seek: id ? { messageId: id.toWire(), inclusive: continuesBatch(id) } : { timestamp: target.timestamp } }, op);
    // What was buffered came from before the seek.
    this.#sink.purge(this);
    this.#lastTaken = undefined;
    this.#seekStart = target.messageId && !target.messageId.isEarliest() && !target.messageId.isLatest() ? target.messageId : undefined;
    const next = answer.success?.readPosition;
    return next ? new MessageId(Number(next.ledgerId), Number(next.entryId), -1, this.partition, 1, this.topic) : undefined;
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
    this.#watch.stop();
    if (this.#state === 'closed') return;
    if (this.isConnected()) {
      this.#acks.flush();
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
    this.#acks.rejectAll(err);
  }

  /** The id of the last entry of the topic (ledgerId -1 if empty). */
  async lastMessageId(): Promise<MessageId> {
    // Only the topic's owner answers: ask the broker the stream is on (after a lookup if none yet).
    const owner = this.#ownerAddress ?? (await this.#ctx.pool.lookup(this.topic));
    const m = await this.#ctx.pool.coalesce(`last:${owner}:${this.topic}`, async () => {
      const conn = await this.#ctx.pool.connect(owner);
      const res = await unary<{ messageId: { ledgerId: number; entryId: number } | null }>(
        (cb, opts) => conn.broker.GetLastMessageId({ topic: this.topic }, opts, cb), this.#ctx.operationTimeoutMs);
      return res.messageId;
    });
    return new MessageId(m?.ledgerId ?? -1, m?.entryId ?? -1, -1, this.partition);
  }
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

/** Whether messages follow `id` in its own entry (a batched message that is not the batch's last). */
function continuesBatch(id: MessageId): boolean {
  return id.batchIndex >= 0 && id.batchIndex < id.batchSize - 1;
}
