import type * as grpc from '@grpc/grpc-js';
import { COMPRESSION_TYPES, compress, toWireCompression, type CompressionType, type WireCompression } from './compression.js';
import type { ClientContext } from './context.js';
import {
  abortError, ClientError, ClientErrorCode, configError, fromGrpcError, fromStreamError,
  operationError, unsupportedOption,
} from './errors.js';
import { partitionForKey, type HashingScheme } from './hash.js';
import type { Logger } from './logger.js';
import { Message, MessageId, type ProducerMessage } from './message.js';
import { encodeMessageBatch, type SingleMessage } from './protocol.js';
import type { ProducerCommand } from './generated/strata/broker/v1/ProducerCommand.js';
import type { ProducerEvent__Output } from './generated/strata/broker/v1/ProducerEvent.js';
import { OwnershipWatch } from './ownership-watch.js';
import { fullTopicName, partitionTopicName } from './topic.js';
import { Backoff, deferred, PendingRequests, Reconnection, sleep, type Deferred } from './util.js';

export type MessageRoutingMode = 'UseSinglePartition' | 'RoundRobinDistribution' | 'CustomPartition';
export type ProducerAccessMode = 'Shared' | 'Exclusive' | 'WaitForExclusive' | 'ExclusiveWithFencing';
export interface TopicMetadata { numPartitions: number }
/** Picks the partition of a message when messageRoutingMode is 'CustomPartition'. */
export type MessageRouter = (message: Message, topicMetadata: TopicMetadata) => number;

/** pulsar-client's ProducerConfig, restricted to what Strata supports (others are rejected). */
export interface ProducerConfig {
  topic: string;
  producerName?: string;
  /** Fail a message not acknowledged within this time (0: never). Default 30000. */
  sendTimeoutMs?: number;
  initialSequenceId?: number;
  /** Messages waiting for acknowledgement, per partition. Default 1000. */
  maxPendingMessages?: number;
  /** At the limit: wait for room (true) or reject with ProducerQueueIsFull (false, the default). */
  blockIfQueueFull?: boolean;
  messageRoutingMode?: MessageRoutingMode;
  /** Default JavaStringHash ('BoostHash' is not supported). */
  hashingScheme?: HashingScheme;
  compressionType?: CompressionType;
  batchingEnabled?: boolean;
  batchingMaxPublishDelayMs?: number;
  batchingMaxMessages?: number;
  batchingMaxAllowedSizeInBytes?: number;
  properties?: { [key: string]: string };
  accessMode?: ProducerAccessMode;
  messageRouter?: MessageRouter;
  /** 'KeyBasedBatching' makes one batch per key (for Key_Shared subscriptions). */
  batchingType?: 'DefaultBatching' | 'KeyBasedBatching';
}

/** Per-call options (a Strata extension). */
export interface SendOptions {
  /** Aborts waiting for room in a full queue (blockIfQueueFull); a queued message is not recalled. */
  signal?: AbortSignal;
}

const SUPPORTED_PRODUCER_OPTIONS = new Set([
  'topic', 'producerName', 'sendTimeoutMs', 'initialSequenceId', 'maxPendingMessages', 'blockIfQueueFull',
  'messageRoutingMode', 'hashingScheme', 'compressionType', 'batchingEnabled', 'batchingMaxPublishDelayMs',
  'batchingMaxMessages', 'batchingMaxAllowedSizeInBytes', 'properties', 'accessMode', 'messageRouter', 'batchingType',
]);
const KNOWN_UNSUPPORTED: Record<string, string> = {
  maxPendingMessagesAcrossPartitions: 'limits apply per partition (maxPendingMessages)',
  publicKeyPath: 'Strata has no end-to-end encryption',
  encryptionKey: 'Strata has no end-to-end encryption',
  encryptionKeys: 'Strata has no end-to-end encryption',
  cryptoKeyReader: 'Strata has no end-to-end encryption',
  cryptoFailureAction: 'Strata has no end-to-end encryption',
  chunkingEnabled: 'Strata does not chunk messages yet',
  schema: 'Strata has no schema registry yet',
};

/** Hard upper bounds on configuration, so that no setting can make memory use unbounded. */
export const PRODUCER_LIMITS = {
  maxPendingMessages: 1_000_000,
  batchingMaxMessages: 100_000,
  batchingMaxAllowedSizeInBytes: 32 * 1024 * 1024,
  /** Sends waiting for room (blockIfQueueFull) per partition; past it they are rejected. */
  maxBlockedSends: 100_000,
};

/**
 * The largest entry a broker takes unless it says otherwise (its `maxMessageBytes` default): the limit
 * until the first ProducerOpened names the broker's own.
 */
const DEFAULT_MAX_MESSAGE_BYTES = 5 * 1024 * 1024;
/** Room left in a batch for the per-message framing that the builder's byte count does not see. */
const BATCH_FRAMING_SLACK_BYTES = 64 * 1024;

export interface CompiledProducerConfig {
  topic: string;
  producerName: string | undefined;
  sendTimeoutMs: number;
  initialSequenceId: number | undefined;
  maxPendingMessages: number;
  blockIfQueueFull: boolean;
  messageRoutingMode: MessageRoutingMode;
  hashingScheme: 'JavaStringHash' | 'Murmur3_32Hash';
  compression: WireCompression;
  batchingEnabled: boolean;
  batchingMaxPublishDelayMs: number;
  batchingMaxMessages: number;
  batchingMaxAllowedSizeInBytes: number;
  properties: Record<string, string>;
  accessMode: 'SHARED' | 'EXCLUSIVE' | 'WAIT_FOR_EXCLUSIVE' | 'EXCLUSIVE_WITH_FENCING';
  messageRouter: MessageRouter | undefined;
  keyBasedBatching: boolean;
}

function intOption(config: Record<string, unknown>, key: string, def: number, min: number, max: number): number {
  const v = config[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw configError(`${key} must be an integer in [${min}, ${max}], got ${String(v)}`);
  return v;
}

function oneOf<T extends string>(config: Record<string, unknown>, key: string, allowed: readonly T[], def: T): T {
  const v = config[key];
  if (v === undefined) return def;
  if (!allowed.includes(v as T)) throw configError(`${key} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got '${String(v)}'`);
  return v as T;
}

export function checkStringMap(v: unknown, key: string): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw configError(`${key} must be an object of strings`);
  for (const [k, s] of Object.entries(v)) if (typeof s !== 'string') throw configError(`${key}.${k} must be a string`);
  return { ...(v as Record<string, string>) };
}

/** Validates and fills defaults once; unknown or unsupported options are an error, never ignored. */
export function compileProducerConfig(config: ProducerConfig): CompiledProducerConfig {
  if (typeof config !== 'object' || config === null) throw configError('Producer config must be an object');
  const c = config as unknown as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (c[key] === undefined || SUPPORTED_PRODUCER_OPTIONS.has(key)) continue;
    const why = KNOWN_UNSUPPORTED[key];
    throw why ? unsupportedOption('Producer', key, why) : unsupportedOption('Producer', key, 'unknown option');
  }
  if (typeof c.topic !== 'string' || c.topic === '') throw configError('Topic is required and must be specified as a string when creating producer');
  if (c.producerName !== undefined && (typeof c.producerName !== 'string')) throw configError('producerName must be a string');
  const hashing = oneOf(c, 'hashingScheme', ['JavaStringHash', 'Murmur3_32Hash', 'BoostHash'] as const, 'JavaStringHash');
  if (hashing === 'BoostHash') throw unsupportedOption('Producer', 'hashingScheme', "'BoostHash' depends on the C++ standard library; use 'JavaStringHash' or 'Murmur3_32Hash'");
  // 'SinglePartition' is accepted as an alias of pulsar-client's 'UseSinglePartition'.
  const routingRaw = c.messageRoutingMode === 'SinglePartition' ? 'UseSinglePartition' : c.messageRoutingMode;
  const routing = oneOf({ messageRoutingMode: routingRaw }, 'messageRoutingMode', ['UseSinglePartition', 'RoundRobinDistribution', 'CustomPartition'] as const, 'UseSinglePartition');
  if (routing === 'CustomPartition' && typeof c.messageRouter !== 'function') throw configError("messageRoutingMode 'CustomPartition' needs a messageRouter function");
  if (c.messageRouter !== undefined && typeof c.messageRouter !== 'function') throw configError('messageRouter must be a function');
  // As pulsar-client: a messageRouter without messageRoutingMode 'CustomPartition' is ignored.
  const accessMode = oneOf(c, 'accessMode', ['Shared', 'Exclusive', 'WaitForExclusive', 'ExclusiveWithFencing'] as const, 'Shared');
  const batchingType = oneOf(c, 'batchingType', ['DefaultBatching', 'KeyBasedBatching'] as const, 'DefaultBatching');
  if (c.batchingEnabled !== undefined && typeof c.batchingEnabled !== 'boolean') throw configError('batchingEnabled must be a boolean');
  if (c.blockIfQueueFull !== undefined && typeof c.blockIfQueueFull !== 'boolean') throw configError('blockIfQueueFull must be a boolean');
  return {
    topic: fullTopicName(config.topic),
    producerName: config.producerName || undefined,
    sendTimeoutMs: intOption(c, 'sendTimeoutMs', 30_000, 0, 24 * 3600_000),
    initialSequenceId: c.initialSequenceId === undefined ? undefined : intOption(c, 'initialSequenceId', 0, -1, Number.MAX_SAFE_INTEGER),
    maxPendingMessages: intOption(c, 'maxPendingMessages', 1000, 1, PRODUCER_LIMITS.maxPendingMessages),
    blockIfQueueFull: config.blockIfQueueFull ?? false,
    messageRoutingMode: routing,
    hashingScheme: hashing,
    compression: toWireCompression(oneOf(c, 'compressionType', COMPRESSION_TYPES, 'None')),
    batchingEnabled: config.batchingEnabled ?? true,
    batchingMaxPublishDelayMs: intOption(c, 'batchingMaxPublishDelayMs', 10, 0, 3_600_000),
    batchingMaxMessages: intOption(c, 'batchingMaxMessages', 1000, 1, PRODUCER_LIMITS.batchingMaxMessages),
    batchingMaxAllowedSizeInBytes: intOption(c, 'batchingMaxAllowedSizeInBytes', 128 * 1024, 1, PRODUCER_LIMITS.batchingMaxAllowedSizeInBytes),
    properties: checkStringMap(c.properties, 'properties'),
    accessMode: ({ Shared: 'SHARED', Exclusive: 'EXCLUSIVE', WaitForExclusive: 'WAIT_FOR_EXCLUSIVE', ExclusiveWithFencing: 'EXCLUSIVE_WITH_FENCING' } as const)[accessMode],
    messageRouter: routing === 'CustomPartition' ? config.messageRouter : undefined,
    keyBasedBatching: batchingType === 'KeyBasedBatching',
  };
}

interface QueuedMessage {
  wire: SingleMessage;
  /** The application's sequence id, if it gave one. */
  userSeq: number | undefined;
  /** Given when the batch is built. */
  sequenceId: number;
  size: number;
  key: string;
  deliverAt: number;
  done: Deferred<MessageId>;
}

interface Batch {
  messages: QueuedMessage[];
  firstSeq: number;
  lastSeq: number;
  compression: WireCompression;
  uncompressedSize: number;
  bytes: Buffer;
  batchKey: string;
  deliverAt: number;
  createdAt: number;
}

type State = 'connecting' | 'ready' | 'closing' | 'closed';

/** Send errors about a batch itself; any other send error is answered by reconnecting and resending. */
const BATCH_ERRORS: ReadonlySet<string> = new Set(['INVALID_ARGUMENT', 'TOO_LARGE', 'NOT_ALLOWED']);

/**
 * The producer of one (partition) topic. Invariants:
 * - `#inflight` holds built batches in sequence order that the broker has not acknowledged; after a
 *   reconnect all of them are written again, in order, before any newer batch, so nothing is lost or
 *   reordered (the broker's deduplication drops a resent batch it already stored).
 * - `#pendingCount` = messages in `#building` + in `#inflight`, never above maxPendingMessages.
 * - Only events of the current stream (`#call`) change state; a stale stream's events are ignored.
 */
export class PartitionProducer {
  readonly topic: string;
  readonly partition: number;
  readonly #ctx: ClientContext;
  readonly #cfg: CompiledProducerConfig;
  readonly #log: Logger;
  readonly #backoff: Backoff;
  readonly #requests: PendingRequests<ProducerEvent__Output>;
  #state: State = 'connecting';
  #call: grpc.ClientDuplexStream<ProducerCommand, ProducerEvent__Output> | undefined;
  #name: string | undefined;
  #nextSeq = 0;
  /** Highest sequence id the broker acknowledged (on open: the one it persisted last), -1 before any. */
  #lastAckedSeq = -1;
  #seqInitialized = false;
  /** Batches being built: one (key '') or, with key-based batching, one per key; insertion order = age. */
  readonly #building = new Map<string, { messages: QueuedMessage[]; bytes: number }>();
  #batchTimer: NodeJS.Timeout | undefined;
  #inflight: Batch[] = [];
  /** Why sends fail once closed, when it was not close(): FENCED. */
  #terminalError: ClientError | undefined;
  #pendingCount = 0;
  #spaceWaiters: Array<{ wake: () => void; fail: (err: unknown) => void }> = [];
  #timeoutTimer: NodeJS.Timeout | undefined;
  /** Aborted by close(): ends the reconnection loop's waits at once. */
  readonly #stopped = new AbortController();
  readonly #reconnection: Reconnection;
  #closeWaiter: Promise<void> | undefined;
  /** The broker's limit on one entry (a batch, or a message sent alone), from ProducerOpened. */
  #maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  /** The broker the stream is on, and when it last said anything (for the ownership watch). */
  #address: string | undefined;
  #heardAt = 0;
  readonly #watch: OwnershipWatch;

  constructor(ctx: ClientContext, cfg: CompiledProducerConfig, topic: string, partition: number) {
    this.#ctx = ctx;
    this.#cfg = cfg;
    this.topic = topic;
    this.partition = partition;
    this.#name = cfg.producerName;
    this.#log = ctx.logger.child({ component: 'producer', topic });
    this.#backoff = new Backoff(ctx.initialBackoffMs, ctx.maxBackoffMs, ctx.random);
    this.#reconnection = new Reconnection({
      backoff: this.#backoff,
      signal: this.#stopped.signal,
      stillConnecting: () => this.#state === 'connecting',
      connectOnce: (to) => this.#connectOnce(to),
      onFailure: (err, attempt) => this.#log.warn({ err, attempt }, 'producer reconnect failed'),
    });
    this.#requests = new PendingRequests(ctx.operationTimeoutMs, () => operationError('Failed to create producer', ClientErrorCode.TIMEOUT), 16);
    if (cfg.initialSequenceId !== undefined) {
      this.#nextSeq = cfg.initialSequenceId + 1;
      this.#seqInitialized = true;
    }
    // Sends unanswered past the threshold: if another broker owns the topic now, resend there.
    this.#watch = new OwnershipWatch(ctx, topic, {
      owner: () => (this.isConnected() ? this.#address : undefined),
      stalledSince: () => (this.#inflight.length > 0 ? Math.max(this.#heardAt, this.#inflight[0]!.createdAt) : undefined),
      moveTo: (address) => this.#dropConnection(address),
    }, this.#log);
  }

  get name(): string {
    return this.#name ?? '';
  }

  get lastSequenceId(): number {
    return this.#lastAckedSeq;
  }

  isConnected(): boolean {
    return this.#state === 'ready' && this.#call !== undefined;
  }

  #isClosed(): boolean {
    return this.#state === 'closing' || this.#state === 'closed';
  }

  /** First connection: retries retriable failures until the operation timeout, then gives up. */
  async start(): Promise<void> {
    const deadline = this.#ctx.clock.now() + this.#ctx.operationTimeoutMs;
    for (;;) {
      try {
        await this.#connectOnce(undefined);
        break;
      } catch (err) {
        const e = fromGrpcError(err);
        if (!e.retriable || this.#ctx.clock.now() >= deadline || this.#state === 'closed') {
          this.#state = 'closed';
          throw e.withContext('Failed to create producer');
        }
        this.#log.debug({ err: e }, 'producer open failed, retrying');
        await sleep(Math.min(this.#backoff.next(), Math.max(0, deadline - this.#ctx.clock.now())), this.#stopped.signal).catch(() => undefined);
      }
    }
    this.#watch.start();
    if (this.#cfg.sendTimeoutMs > 0) {
      const every = Math.max(10, Math.min(1000, Math.floor(this.#cfg.sendTimeoutMs / 10)));
      this.#timeoutTimer = setInterval(() => this.#expire(), every);
      this.#timeoutTimer.unref?.();
    }
  }

  async #connectOnce(redirect: string | undefined): Promise<void> {
    const address = redirect ?? (await this.#ctx.pool.lookup(this.topic));
    const conn = await this.#ctx.pool.connect(address);
    if (this.#isClosed()) return;
    const call = conn.broker.Produce();
    this.#call = call;
    call.on('data', (ev: ProducerEvent__Output) => this.#onEvent(call, ev));
    call.on('error', (err) => this.#onStreamEnd(call, fromGrpcError(err), undefined));
    call.on('end', () => this.#onStreamEnd(call, new ClientError(ClientErrorCode.UNAVAILABLE, 'producer stream ended'), undefined));
    const { id, promise } = this.#requests.start();
    call.write({ open: { topic: this.topic, producerName: this.#name ?? '', accessMode: this.#cfg.accessMode, properties: this.#cfg.properties, requestId: id } });
    let opened;
    try {
      opened = (await promise).opened!;
    } catch (err) {
      if (this.#call === call) this.#call = undefined;
      call.cancel();
      throw err;
    }
    if (this.#call !== call) throw new ClientError(ClientErrorCode.UNAVAILABLE, 'producer stream ended while opening');
    this.#name = opened.producerName || this.#name;
    if (opened.maxMessageSize > 0) this.#maxMessageBytes = opened.maxMessageSize;
    if (!this.#seqInitialized) {
      this.#nextSeq = Math.max(0, opened.lastSequenceId + 1);
      this.#seqInitialized = true;
    }
    this.#lastAckedSeq = Math.max(this.#lastAckedSeq, opened.lastSequenceId);
    this.#state = 'ready';
    this.#address = conn.address;
    this.#heardAt = this.#ctx.clock.now();
    this.#backoff.reset();
    this.#log.info({ broker: conn.address, producerName: this.#name, resend: this.#inflight.length }, 'producer connected');
    for (const batch of this.#inflight) this.#write(batch);
  }

  #onEvent(call: grpc.ClientDuplexStream<ProducerCommand, ProducerEvent__Output>, ev: ProducerEvent__Output): void {
    if (call !== this.#call) return;
    this.#heardAt = this.#ctx.clock.now();
    switch (ev.event) {
      case 'opened':
        this.#requests.resolve(ev.opened!.requestId, ev);
        break;
      case 'success':
        this.#requests.resolve(ev.success!.requestId, ev);
        break;
      case 'error':
        this.#requests.reject(ev.error!.requestId, fromStreamError(ev.error!));
        break;
      case 'receipt':
        this.#onReceipt(ev.receipt!);
        break;
      case 'sendError':
        this.#onSendError(ev.sendError!);
        break;
      case 'closed':
        this.#log.info({ reason: ev.closed!.reason, redirect: ev.closed!.redirectBrokerUrl, errorCode: ev.closed!.errorCode }, 'broker closed the producer');
        if (ev.closed!.errorCode === ClientErrorCode.FENCED) {
          this.#fence(operationError('Failed to send message', ClientErrorCode.FENCED, ev.closed!.reason));
          break;
        }
        this.#onStreamEnd(call, new ClientError(ClientErrorCode.SERVICE_NOT_READY, ev.closed!.reason || 'closed by the broker'), ev.closed!.redirectBrokerUrl || undefined);
        break;
      default:
        break;
    }
  }

  #onReceipt(r: { sequenceId: number; highestSequenceId: number; messageId: { ledgerId: number; entryId: number } | null }): void {
    const head = this.#inflight[0];
    if (!head || r.sequenceId < head.firstSeq) return; // a late receipt for a batch that timed out or was resent
    if (r.sequenceId !== head.firstSeq) {
      this.#log.warn({ expected: head.firstSeq, got: r.sequenceId }, 'receipt out of order; reconnecting');
      this.#dropConnection(undefined);
      return;
    }
    this.#inflight.shift();
    const n = head.messages.length;
    const ledgerId = r.messageId?.ledgerId ?? -1;
    const entryId = r.messageId?.entryId ?? -1;
    this.#ctx.published.note(this.topic, ledgerId, entryId);
    this.#lastAckedSeq = Math.max(this.#lastAckedSeq, head.lastSeq);
    head.messages.forEach((m, i) => m.done.resolve(new MessageId(ledgerId, entryId, n > 1 ? i : -1, this.partition, n, this.topic)));
    this.#release(n);
  }

  /**
   * A SendError about the batch itself (bad or too large) fails that batch's messages; any other
   * (storage trouble, the broker stepping down) means "reconnect and resend from the first
   * unacknowledged batch": the broker answers every later batch the same way and closes the stream.
   */
  #onSendError(e: { sequenceId: number; errorCode: string; message: string }): void {
    const err = fromStreamError(e);
    if (!BATCH_ERRORS.has(err.code)) {
      this.#log.warn({ err, sequenceId: e.sequenceId }, 'send failed on the broker; reconnecting to resend');
      this.#dropConnection(undefined);
      return;
    }
    const index = this.#inflight.findIndex((b) => b.firstSeq === e.sequenceId);
    if (index < 0) return;
    const [batch] = this.#inflight.splice(index, 1);
    for (const m of batch!.messages) m.done.reject(err.withContext('Failed to send message'));
    this.#release(batch!.messages.length);
  }

  #dropConnection(redirect: string | undefined): void {
    const call = this.#call;
    if (call) this.#onStreamEnd(call, new ClientError(ClientErrorCode.UNAVAILABLE, 'reconnecting'), redirect);
  }

  #onStreamEnd(call: grpc.ClientDuplexStream<ProducerCommand, ProducerEvent__Output>, err: ClientError, redirect: string | undefined): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    call.cancel();
    this.#requests.rejectAll(err);
    if (this.#state === 'closing' || this.#state === 'closed') return;
    // gRPC refused a frame over the broker's receive limit (a limit lower than the one it announced).
    // Resending it would loop; fail the largest batch in flight, which is the one that cannot pass.
    if (err.code === ClientErrorCode.TOO_LARGE) this.#failLargestInflight(err);
    if (this.#state === 'ready') {
      this.#state = 'connecting';
      this.#log.warn({ err, redirect }, 'producer disconnected');
      void this.#reconnection.start(redirect);
    }
  }

  /** Queues a message; a send() made before close() is accepted even if close() runs before it resolves. */
  send(msg: ProducerMessage, options?: SendOptions): Promise<MessageId> {
    let wire: SingleMessage;
    try {
      wire = toWireMessage(msg);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#isClosed()) return Promise.reject(this.#terminalError ?? operationError('Failed to send message', ClientErrorCode.ALREADY_CLOSED));
    // Behind blocked sends, a new one waits too, so that sends keep their call order.
    if (this.#pendingCount < this.#cfg.maxPendingMessages && this.#spaceWaiters.length === 0) {
      this.#pendingCount++;
      return this.#enqueue(msg, wire);
    }
    return this.#reserve(options?.signal).then(() => {
      if (this.#isClosed()) {
        this.#release(1);
        throw operationError('Failed to send message', ClientErrorCode.ALREADY_CLOSED);
      }
      return this.#enqueue(msg, wire);
    });
  }

  #enqueue(msg: ProducerMessage, wire: SingleMessage): Promise<MessageId> {
    if (msg.sequenceId !== undefined) this.#nextSeq = Math.max(this.#nextSeq, msg.sequenceId + 1);
    const deliverAt = msg.deliverAt ?? (msg.deliverAfter !== undefined ? Date.now() + msg.deliverAfter : 0);
    wire.deliverAtTime = deliverAt;
    const size = (wire.payload?.length ?? 0) + 32;
    const key = msg.orderingKey ?? msg.partitionKey ?? '';
    const q: QueuedMessage = { wire, userSeq: msg.sequenceId, sequenceId: -1, size, key, deliverAt, done: deferred<MessageId>() };
    // Delayed messages travel alone: the whole entry shares one deliver-at time.
    if (!this.#cfg.batchingEnabled || deliverAt > 0) {
      this.#flushBuilding();
      this.#enqueueBatch([q]);
      return q.done.promise;
    }
    // Key-based batching keeps one batch per key, so each entry has one key (Key_Shared routes by it).
    const slot = this.#cfg.keyBasedBatching ? key : '';
    let builder = this.#building.get(slot);
    const maxBatchBytes = this.#maxBatchBytes();
    if (builder && builder.bytes + size > maxBatchBytes) {
      this.#flushBuilder(slot);
      builder = undefined;
    }
    if (!builder) {
      builder = { messages: [], bytes: 0 };
      this.#building.set(slot, builder);
    }
    builder.messages.push(q);
    builder.bytes += size;
    if (builder.messages.length >= this.#cfg.batchingMaxMessages || builder.bytes >= maxBatchBytes) {
      this.#flushBuilder(slot);
    } else if (!this.#batchTimer) {
      this.#batchTimer = setTimeout(() => {
        this.#batchTimer = undefined;
        this.#flushBuilding();
      }, this.#cfg.batchingMaxPublishDelayMs);
    }
    return q.done.promise;
  }

  /** Waits for a slot, in arrival order; #release hands the slot over before waking the waiter. */
  #reserve(signal: AbortSignal | undefined): Promise<void> {
    if (!this.#cfg.blockIfQueueFull) return Promise.reject(operationError('Failed to send message', ClientErrorCode.PRODUCER_QUEUE_FULL));
    if (signal?.aborted) return Promise.reject(abortError(signal, 'Failed to send message'));
    if (this.#spaceWaiters.length >= PRODUCER_LIMITS.maxBlockedSends) {
      return Promise.reject(operationError('Failed to send message', ClientErrorCode.PRODUCER_QUEUE_FULL, `${PRODUCER_LIMITS.maxBlockedSends} sends already wait for room`));
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        wake: () => { signal?.removeEventListener('abort', onAbort); resolve(); },
        fail: (err: unknown) => { signal?.removeEventListener('abort', onAbort); reject(err); },
      };
      const onAbort = () => {
        this.#spaceWaiters = this.#spaceWaiters.filter((w) => w !== waiter);
        reject(abortError(signal, 'Failed to send message'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#spaceWaiters.push(waiter);
    });
  }

  #release(n: number): void {
    this.#pendingCount -= n;
    while (this.#spaceWaiters.length > 0 && this.#pendingCount < this.#cfg.maxPendingMessages) {
      this.#pendingCount++;
      this.#spaceWaiters.shift()!.wake();
    }
  }

  /** Sends every batch being built, oldest first. */
  #flushBuilding(): void {
    if (this.#batchTimer) {
      clearTimeout(this.#batchTimer);
      this.#batchTimer = undefined;
    }
    for (const slot of [...this.#building.keys()]) this.#flushBuilder(slot);
  }

  #flushBuilder(slot: string): void {
    const builder = this.#building.get(slot);
    this.#building.delete(slot);
    if (builder && builder.messages.length > 0) this.#enqueueBatch(builder.messages);
  }

  /**
   * Builds a batch. Sequence ids are given here, in the order batches are sent, so every batch covers
   * an increasing, contiguous range even with key-based batching (deduplication compares them).
   */
  #enqueueBatch(messages: QueuedMessage[]): void {
    for (const m of messages) {
      m.sequenceId = m.userSeq ?? this.#nextSeq++;
      m.wire.sequenceId = m.sequenceId;
    }
    let payload: Buffer;
    let bytes: Buffer;
    try {
      payload = encodeMessageBatch(messages.map((m) => m.wire));
      bytes = compress(this.#cfg.compression, payload);
    } catch (err) {
      for (const m of messages) m.done.reject(fromGrpcError(err).withContext('Failed to send message'));
      this.#release(messages.length);
      return;
    }
    if (bytes.length > this.#maxMessageBytes) {
      const what = messages.length === 1 ? `message of ${bytes.length} bytes` : `batch of ${messages.length} messages (${bytes.length} bytes)`;
      const err = operationError('Failed to send message', ClientErrorCode.TOO_LARGE, `${what} exceeds the broker's maximum message size of ${this.#maxMessageBytes} bytes`);
      for (const m of messages) m.done.reject(err);
      this.#release(messages.length);
      return;
    }
    const key = messages[0]!.key;
    const batch: Batch = {
      messages,
      firstSeq: messages[0]!.sequenceId,
      lastSeq: messages[messages.length - 1]!.sequenceId,
      compression: this.#cfg.compression,
      uncompressedSize: payload.length,
      bytes,
      batchKey: key !== '' && messages.every((m) => m.key === key) ? key : '',
      deliverAt: messages[0]!.deliverAt,
      createdAt: this.#ctx.clock.now(),
    };
    this.#inflight.push(batch);
    if (this.#state === 'ready') this.#write(batch);
  }

  /** A batch closes before it would outgrow the broker's entry limit, whatever batchingMaxAllowedSizeInBytes says. */
  #maxBatchBytes(): number {
    return Math.min(this.#cfg.batchingMaxAllowedSizeInBytes, Math.max(1, this.#maxMessageBytes - BATCH_FRAMING_SLACK_BYTES));
  }

  #failLargestInflight(err: ClientError): void {
    let largest = -1;
    this.#inflight.forEach((b, i) => { if (largest < 0 || b.bytes.length > this.#inflight[largest]!.bytes.length) largest = i; });
    if (largest < 0) return;
    const [batch] = this.#inflight.splice(largest, 1);
    this.#log.warn({ bytes: batch!.bytes.length, maxMessageBytes: this.#maxMessageBytes }, 'the broker refused a frame as too large; failing that batch');
    for (const m of batch!.messages) m.done.reject(err.withContext('Failed to send message'));
    this.#release(batch!.messages.length);
  }

  #write(batch: Batch): void {
    this.#call?.write({
      send: {
        metadata: {
          producerName: this.#name ?? '',
          sequenceId: batch.firstSeq,
          highestSequenceId: batch.lastSeq,
          numMessages: batch.messages.length,
          compression: batch.compression,
          uncompressedSize: batch.uncompressedSize,
          batchKey: batch.batchKey,
          deliverAtTime: batch.deliverAt,
        },
        batch: batch.bytes,
      },
    });
  }

  /** Fails the batches older than sendTimeoutMs (a prefix of #inflight: it is in creation order). */
  #expire(): void {
    const limit = this.#ctx.clock.now() - this.#cfg.sendTimeoutMs;
    while (this.#inflight.length > 0 && this.#inflight[0]!.createdAt <= limit) {
      const batch = this.#inflight.shift()!;
      for (const m of batch.messages) m.done.reject(operationError('Failed to send message', ClientErrorCode.TIMEOUT));
      this.#release(batch.messages.length);
    }
  }

  /** Sends what is being batched and waits until every message sent so far is settled. */
  async flush(): Promise<void> {
    this.#flushBuilding();
    await Promise.allSettled(this.#inflight.flatMap((b) => b.messages.map((m) => m.done.promise)));
  }

  /**
   * Sends the batch being built and asks the broker to close; the broker answers after the receipts
   * it still owes, so what it stored is acknowledged. What is still pending after that fails with
   * AlreadyClosed (at most operationTimeoutSeconds later).
   */
  close(): Promise<void> {
    this.#closeWaiter ??= this.#close();
    return this.#closeWaiter;
  }

  async #close(): Promise<void> {
    this.#stopped.abort();
    if (this.#state === 'closed') return;
    const wasReady = this.#state === 'ready';
    if (wasReady) this.#flushBuilding();
    this.#state = 'closing';
    const call = this.#call;
    if (call && wasReady) {
      try {
        const { id, promise } = this.#requests.start();
        call.write({ close: { requestId: id } });
        await promise;
      } catch (err) {
        this.#log.debug({ err }, 'close request failed');
      }
    }
    this.#state = 'closed';
    this.#call = undefined;
    call?.end();
    call?.cancel();
    this.#shutdown(operationError('Failed to send message', ClientErrorCode.ALREADY_CLOSED));
  }

  /** Another producer took exclusive access: final, as pulsar-client's fenced producer. */
  #fence(err: ClientError): void {
    const call = this.#call;
    this.#terminalError = err;
    this.#state = 'closed';
    this.#call = undefined;
    this.#stopped.abort();
    call?.cancel();
    this.#shutdown(err);
  }

  #shutdown(err: ClientError): void {
    this.#watch.stop();
    if (this.#batchTimer) clearTimeout(this.#batchTimer);
    if (this.#timeoutTimer) clearInterval(this.#timeoutTimer);
    this.#batchTimer = this.#timeoutTimer = undefined;
    for (const b of this.#building.values()) for (const m of b.messages) m.done.reject(err);
    for (const b of this.#inflight) for (const m of b.messages) m.done.reject(err);
    this.#building.clear();
    this.#inflight = [];
    this.#pendingCount = 0;
    for (const w of this.#spaceWaiters.splice(0)) w.fail(err);
    this.#requests.rejectAll(err);
  }
}

const MESSAGE_FIELDS: ReadonlySet<string> = new Set([
  'data', 'properties', 'eventTimestamp', 'sequenceId', 'partitionKey', 'orderingKey', 'replicationClusters', 'deliverAfter', 'deliverAt', 'disableReplication',
]);
/** Shared by every message without an ordering key; encoding only reads it. */
const NO_ORDERING_KEY = Buffer.alloc(0);
const EMPTY_PAYLOAD = Buffer.alloc(0);
const NO_REPLICATION_CLUSTERS: string[] = [];

/**
 * The wire form of a message, typed exactly as encodeMessageBatch needs it (it skips protobufjs'
 * conversion): numbers, Buffers, a string map. Runs once per message, so it allocates little.
 */
function toWireMessage(input: ProducerMessage): SingleMessage {
  if (input === null || input === undefined) throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, 'message must be an object');
  // As pulsar-client, which reads the fields off Object(message): a primitive has none, so it is an
  // empty message, and a message without data has an empty payload.
  const msg: ProducerMessage = typeof input === 'object' ? input : ({} as ProducerMessage);
  const data = msg.data ?? EMPTY_PAYLOAD;
  if (!Buffer.isBuffer(data)) throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, 'data must be a Buffer');
  for (const k in msg) {
    if (!MESSAGE_FIELDS.has(k) && Object.prototype.hasOwnProperty.call(msg, k)) {
      throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, `unknown message field '${k}'`);
    }
  }
  const partitionKey = msg.partitionKey ?? '';
  if (typeof partitionKey !== 'string') throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, 'partitionKey must be a string');
  for (const k of ['eventTimestamp', 'sequenceId', 'deliverAt', 'deliverAfter'] as const) {
    const v = msg[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) {
      throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, `${k} must be a non-negative integer`);
    }
  }
  const eventTime = msg.eventTimestamp ?? 0;
  const clusters = msg.replicationClusters ?? NO_REPLICATION_CLUSTERS;
  if (!Array.isArray(clusters) || clusters.some((c) => typeof c !== 'string')) {
    throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, 'replicationClusters must be an array of strings');
  }
  return {
    payload: data,
    properties: msg.properties ? checkStringMap(msg.properties, 'properties') : {},
    partitionKey,
    orderingKey: msg.orderingKey !== undefined ? Buffer.from(String(msg.orderingKey), 'utf8') : NO_ORDERING_KEY,
    eventTime,
    replicationClusters: clusters,
    disableReplication: Boolean(msg.disableReplication),
  };
}

/**
 * A producer on a topic; on a partitioned topic one PartitionProducer per partition, each with its
 * own batching and pending limit, and the routing mode choosing among them.
 */
export class Producer {
  readonly #topic: string;
  readonly #cfg: CompiledProducerConfig;
  readonly #parts: PartitionProducer[];
  readonly #partitioned: boolean;
  readonly #singlePartition: number;
  readonly #onClose: (p: Producer) => void;
  #roundRobin = 0;

  private constructor(cfg: CompiledProducerConfig, parts: PartitionProducer[], partitioned: boolean, random: () => number, onClose: (p: Producer) => void) {
    this.#topic = cfg.topic;
    this.#cfg = cfg;
    this.#parts = parts;
    this.#partitioned = partitioned;
    this.#singlePartition = Math.floor(random() * parts.length);
    this.#roundRobin = this.#singlePartition;
    this.#onClose = onClose;
  }

  /** @internal use Client.createProducer. */
  static async create(ctx: ClientContext, config: ProducerConfig, onClose: (p: Producer) => void): Promise<Producer> {
    const cfg = compileProducerConfig(config);
    let partitions: number;
    try {
      partitions = await ctx.pool.partitions(cfg.topic);
    } catch (err) {
      throw fromGrpcError(err).withContext('Failed to create producer');
    }
    const parts = partitions === 0
      ? [new PartitionProducer(ctx, cfg, cfg.topic, -1)]
      : Array.from({ length: partitions }, (_, i) => new PartitionProducer(ctx, cfg, partitionTopicName(cfg.topic, i), i));
    const results = await Promise.allSettled(parts.map((p) => p.start()));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await Promise.allSettled(parts.map((p) => p.close()));
      throw (failed as PromiseRejectedResult).reason;
    }
    return new Producer(cfg, parts, partitions > 0, ctx.random, onClose);
  }

  /** Resolves with the message's id once the broker has stored it durably. */
  send(message: ProducerMessage, options?: SendOptions): Promise<MessageId> {
    let part: PartitionProducer;
    try {
      part = this.#parts[this.#route(message)]!;
    } catch (err) {
      return Promise.reject(err);
    }
    return part.send(message, options);
  }

  #route(message: ProducerMessage): number {
    const n = this.#parts.length;
    if (!this.#partitioned || n === 1) return 0;
    if (this.#cfg.messageRoutingMode === 'CustomPartition') {
      const preview = new Message({
        topicName: '', data: message.data, properties: message.properties ?? {}, messageId: MessageId.earliest(),
        publishTimestamp: 0, eventTimestamp: message.eventTimestamp ?? 0, redeliveryCount: 0,
        partitionKey: message.partitionKey ?? '', orderingKey: message.orderingKey ?? '', producerName: this.getProducerName(),
        replicatedFrom: '', sequenceId: message.sequenceId ?? -1, size: message.data?.length ?? 0,
      });
      let p: number;
      try {
        p = this.#cfg.messageRouter!(preview, { numPartitions: n });
      } catch (err) {
        throw operationError('Failed to send message', ClientErrorCode.INTERNAL, `messageRouter threw: ${(err as Error)?.message ?? String(err)}`, err);
      }
      if (!Number.isInteger(p) || p < 0 || p >= n) throw operationError('Failed to send message', ClientErrorCode.INVALID_ARGUMENT, `messageRouter returned ${String(p)}, not a partition in [0, ${n - 1}]`);
      return p;
    }
    const key = message.partitionKey;
    if (key !== undefined && key !== '') return partitionForKey(this.#cfg.hashingScheme, key, n);
    if (this.#cfg.messageRoutingMode === 'UseSinglePartition') return this.#singlePartition;
    // Round robin: with batching, switch partition once per batching window so batches fill up.
    if (this.#cfg.batchingEnabled && this.#cfg.batchingMaxPublishDelayMs > 0) {
      return (Math.floor(Date.now() / this.#cfg.batchingMaxPublishDelayMs) + this.#singlePartition) % n;
    }
    return this.#roundRobin++ % n;
  }

  async flush(): Promise<null> {
    await Promise.all(this.#parts.map((p) => p.flush()));
    return null;
  }

  async close(): Promise<null> {
    await Promise.all(this.#parts.map((p) => p.close()));
    this.#onClose(this);
    return null;
  }

  getProducerName(): string {
    return this.#parts[0]!.name;
  }

  getTopic(): string {
    return this.#topic;
  }

  /**
   * The highest sequence id the broker acknowledged from this producer (over all partitions), -1 if none
   * (the Java client's). With deduplication on, a producer under an earlier session's name starts from
   * the last one that session stored.
   */
  getLastSequenceId(): number {
    return Math.max(...this.#parts.map((p) => p.lastSequenceId));
  }

  /** True when every partition's stream is open. */
  isConnected(): boolean {
    return this.#parts.every((p) => p.isConnected());
  }
}
