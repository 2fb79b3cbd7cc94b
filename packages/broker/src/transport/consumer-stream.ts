import type * as grpc from '@grpc/grpc-js';
import { asStrataError, ErrorCode, type Logger } from '@strata/runtime';
import type { BrokerService } from '../topics/broker-service.js';
import type { Consumer, DispatchEntry, SubscriptionType } from '../topics/consumer.js';
import { InvalidRequestError, ServiceNotReadyError } from '../errors.js';
import type { ConsumerCommand__Output } from '../generated/strata/broker/v1/ConsumerCommand.js';
import type { ConsumerEvent } from '../generated/strata/broker/v1/ConsumerEvent.js';
import type { MessageId__Output } from '../generated/strata/broker/v1/MessageId.js';
import type { Subscribe__Output } from '../generated/strata/broker/v1/Subscribe.js';
import { NAME_MAX_CHARS, TopicName } from '../names.js';
import type { InitialPosition, Position } from '../storage/index.js';
import type { Topic, TopicSubscription } from '../topics/topic.js';

export interface ConsumerStreamContext {
  service: BrokerService;
  logger: Logger;
  /** Message ids per Ack/Nack/Redeliver command, at most. */
  maxIdsPerCommand: number;
}

type Call = grpc.ServerDuplexStream<ConsumerCommand__Output, ConsumerEvent>;

const TYPES: ReadonlySet<string> = new Set(['EXCLUSIVE_SUB', 'SHARED_SUB', 'FAILOVER_SUB', 'KEY_SHARED_SUB']);
let consumerSeq = 0;
const MAX_QUEUED_COMMANDS = 1000;
const DELIVERY_MAX_BYTES = 1024 * 1024;
/** No "/" (the name is a metadata key segment) and no control characters. */
const SUBSCRIPTION_NAME = /^[^/\u0000-\u001f\u007f]+$/;

/** A message id naming a stored entry; INVALID_ARGUMENT when it cannot be one. */
/** Shared by every delivered entry without batch index acks (encoding only reads it). */
const NO_INDEXES: number[] = [];

export function toPosition(id: MessageId__Output | null | undefined): Position {
  if (!id) throw new InvalidRequestError('missing message id');
  const { ledgerId, entryId } = id;
  if (!Number.isSafeInteger(ledgerId) || !Number.isSafeInteger(entryId) || ledgerId < 0 || entryId < 0) {
    throw new InvalidRequestError(`bad message id ${String(ledgerId)}:${String(entryId)}`);
  }
  return { ledgerId, entryId };
}

/**
 * Seek / start targets: ledger_id < 0 means the earliest message, ledger_id >= 2^53-1 (or int64 max)
 * the latest (after the last message), as Pulsar's MessageId.earliest / latest.
 */
export function toTarget(id: MessageId__Output | null | undefined): Position | InitialPosition {
  if (!id) throw new InvalidRequestError('missing message id');
  if (id.ledgerId < 0) return 'earliest';
  if (id.ledgerId >= Number.MAX_SAFE_INTEGER) return 'latest';
  return toPosition({ ...id, entryId: Math.max(0, id.entryId) });
}

/**
 * One Consume stream = one consumer. The first command must be Subscribe (answered by Subscribed or
 * a RequestError, after which another Subscribe may be tried). Then: Flow adds permits (entries);
 * Ack (individual or cumulative) / Nack / RedeliverUnacknowledged / Seek / Unsubscribe / CloseConsumer.
 * A bad command gets a RequestError and the stream lives on. The broker ends the stream with Closed
 * when the topic unloads or is deleted.
 */
export function handleConsume(call: Call, ctx: ConsumerStreamContext): void {
  const logger = ctx.logger.child({ component: 'consumer-stream', peer: call.getPeer() });
  let topic: Topic | undefined;
  let sub: TopicSubscription | undefined;
  let consumer: Consumer | undefined;
  let subscribing = false;
  let ended = false;

  const write = (event: ConsumerEvent) => {
    if (ended) return;
    try {
      call.write(event);
    } catch (err) {
      logger.debug({ err }, 'write to a closed consumer stream');
    }
  };

  const detach = () => {
    if (sub && consumer) sub.removeConsumer(consumer);
    sub = undefined;
  };

  const finish = (closedReason?: string, redirectBrokerUrl = '') => {
    if (ended) return;
    if (closedReason !== undefined) write({ closed: { reason: closedReason, redirectBrokerUrl } });
    ended = true;
    detach();
    try {
      call.end();
    } catch {
      // already gone
    }
  };

  const fail = (requestId: number, err: unknown) => {
    const e = asStrataError(err);
    if (e.code === ErrorCode.INTERNAL) logger.warn({ err }, 'consumer request failed');
    write({ error: { requestId, errorCode: e.code, message: e.message } });
  };

  const need = (): { sub: TopicSubscription; consumer: Consumer } => {
    if (!sub || !consumer) throw new InvalidRequestError('subscribe first');
    return { sub, consumer };
  };

  const ids = (list: MessageId__Output[] | undefined): Position[] => {
    const l = list ?? [];
    if (l.length > ctx.maxIdsPerCommand) throw new InvalidRequestError(`more than ${ctx.maxIdsPerCommand} message ids in one command`);
    return l.map(toPosition);
  };

  const onSubscribe = async (s: Subscribe__Output) => {
    const requestId = s.requestId;
    if (consumer || subscribing) return fail(requestId, new InvalidRequestError('this stream already has a consumer'));
    subscribing = true;
    try {
      const name = TopicName.parse(s.topic);
      if (!TYPES.has(String(s.type))) throw new InvalidRequestError(`unknown subscription type ${String(s.type)}`);
      if (s.durable && (!s.subscription || s.subscription.length > NAME_MAX_CHARS || !SUBSCRIPTION_NAME.test(s.subscription))) {
        throw new InvalidRequestError(`subscription name must be 1..${NAME_MAX_CHARS} characters, without "/" or control characters`);
      }
      if (s.priorityLevel < 0) throw new InvalidRequestError('priority_level must be >= 0');
      const initialPosition: InitialPosition = s.initialPosition === 'EARLIEST' ? 'earliest' : 'latest';
      const t = await ctx.service.getTopic(name, { create: true });
      const consumerName = s.consumerName || `consumer-${process.pid}-${++consumerSeq}`;
      const sticky = s.keySharedPolicy?.mode === 'STICKY' ? (s.keySharedPolicy.ranges ?? []) : [];
      if (s.keySharedPolicy?.mode === 'STICKY' && sticky.length === 0) throw new InvalidRequestError('STICKY key-shared policy without ranges');
      const result = await t.subscribe({
        subscription: s.subscription, type: s.type as SubscriptionType, consumerName, priority: s.priorityLevel,
        durable: s.durable, initialPosition,
        startMessageId: s.startMessageId ? toTarget(s.startMessageId) : undefined,
        startInclusive: s.startInclusive, stickyRanges: sticky, nackDelayMs: s.negativeAckRedeliveryDelayMs,
        sink: {
          deliver: (entries: readonly DispatchEntry[]) => {
            // One stream message carries entries up to DELIVERY_MAX_BYTES (always at least one), so a
            // delivery never exceeds the gRPC message limit (max message size + 1 MiB).
            let chunk: DispatchEntry[] = [];
            let bytes = 0;
            const send = () => write({
              delivery: {
                entries: chunk.map((e) => ({
                  messageId: { ledgerId: e.position.ledgerId, entryId: e.position.entryId, batchIndex: -1, partition: t.name.partitionIndex },
                  redeliveryCount: e.redeliveryCount, envelope: e.envelope, ackedBatchIndexes: e.ackedBatchIndexes ? [...e.ackedBatchIndexes] : NO_INDEXES,
                })),
              },
            });
            for (const e of entries) {
              if (chunk.length > 0 && bytes + e.size > DELIVERY_MAX_BYTES) {
                send();
                chunk = [];
                bytes = 0;
              }
              chunk.push(e);
              bytes += e.size;
            }
            if (chunk.length > 0) send();
          },
          activeChange: (isActive) => write({ activeConsumerChange: { isActive } }),
          closed: (reason, redirect) => finish(reason, redirect),
        },
      });
      if (ended) {
        result.subscription.removeConsumer(result.consumer);
        return;
      }
      topic = t;
      sub = result.subscription;
      consumer = result.consumer;
      write({ subscribed: { requestId, consumerName } });
      logger.info({ topic: t.name.toString(), subscription: sub.name, consumer: consumerName, type: s.type }, 'consumer subscribed');
    } catch (err) {
      fail(requestId, err);
    } finally {
      subscribing = false;
    }
  };

  const handle = async (cmd: ConsumerCommand__Output) => {
    // A broker woken after losing its session closes its topics here (their consumers are told),
    // before it serves a command that waited while it was frozen.
    if (cmd.command !== 'subscribe' && !ctx.service.serving()) {
      const requestId = (cmd[cmd.command as keyof ConsumerCommand__Output] as { requestId?: number } | undefined)?.requestId ?? 0;
      fail(requestId, new ServiceNotReadyError('this broker lost its metadata session; look the topic up again'));
      finish('this broker lost its metadata session');
      return;
    }
    switch (cmd.command) {
      case 'subscribe':
        return onSubscribe(cmd.subscribe as Subscribe__Output);
      case 'flow': {
        const { sub: s, consumer: c } = need();
        s.flow(c, cmd.flow?.permits ?? 0);
        return;
      }
      case 'ack': {
        const requestId = cmd.ack?.requestId ?? 0;
        try {
          const { sub: s, consumer: c } = need();
          const cumulative = cmd.ack?.cumulative ?? false;
          const all = cmd.ack?.messageIds ?? [];
          // A message of a batch acked on its own (batchIndexAckEnabled) names its index and batch size.
          const single = (id: MessageId__Output) => !cumulative && id.batchIndex >= 0 && id.batchSize > 1;
          const batchIndexAcks = all.filter(single);
          const positions = ids(batchIndexAcks.length > 0 ? all.filter((id) => !single(id)) : all);
          await s.ack(c, positions, cumulative);
          if (batchIndexAcks.length > 0) {
            await s.ackBatchIndexes(c, ids(batchIndexAcks).map((position, i) => ({ position, index: batchIndexAcks[i]!.batchIndex, size: batchIndexAcks[i]!.batchSize })));
          }
          if (cmd.ack?.durable) {
            // An ack receipt: answered once the cursor flush that includes it is done. Waited for off
            // the command chain, so flow and other acks go on meanwhile and concurrent receipts share
            // one flush. Bounded by the stream's outstanding requests (the client's own limit).
            s.persistAcks(positions, cumulative).then(
              () => { if (requestId) write({ success: { requestId } }); },
              (err: unknown) => fail(requestId, err),
            );
            return;
          }
          if (requestId) write({ success: { requestId } });
        } catch (err) {
          fail(requestId, err);
        }
        return;
      }
      case 'nack': {
        const { sub: s, consumer: c } = need();
        s.nack(c, ids(cmd.nack?.messageIds));
        return;
      }
      case 'redeliver': {
        const { sub: s, consumer: c } = need();
        s.redeliverUnacknowledged(c, ids(cmd.redeliver?.messageIds));
        return;
      }
      case 'seek': {
        const seek = cmd.seek;
        const requestId = seek?.requestId ?? 0;
        try {
          const { sub: s } = need();
          let next: Position;
          if (seek?.target === 'messageId') {
            const target = toTarget(seek.messageId);
            next = await s.seek(seek.inclusive || typeof target === 'string' ? target : { after: target });
          } else if (seek?.target === 'timestamp') {
            next = await s.seek({ timestampMs: seek.timestamp ?? 0 });
          } else {
            throw new InvalidRequestError('seek needs a message_id or a timestamp');
          }
          write({ success: { requestId, readPosition: { ledgerId: next.ledgerId, entryId: next.entryId, batchIndex: -1, partition: -1 } } });
        } catch (err) {
          fail(requestId, err);
        }
        return;
      }
      case 'unsubscribe': {
        const requestId = cmd.unsubscribe?.requestId ?? 0;
        try {
          const { sub: s, consumer: c } = need();
          await (topic as Topic).unsubscribe(s, c);
          sub = undefined;
          write({ success: { requestId } });
          finish();
        } catch (err) {
          fail(requestId, err);
        }
        return;
      }
      case 'close': {
        write({ success: { requestId: cmd.close?.requestId ?? 0 } });
        finish();
        return;
      }
      default:
        throw new InvalidRequestError('empty consumer command');
    }
  };

  // Commands run one at a time in arrival order (a Flow right after Subscribe applies to it); a
  // client that floods commands is paused past MAX_QUEUED_COMMANDS.
  let chain: Promise<void> = Promise.resolve();
  let queued = 0;
  let paused = false;
  call.on('data', (cmd: ConsumerCommand__Output) => {
    queued++;
    if (queued > MAX_QUEUED_COMMANDS && !paused) {
      paused = true;
      call.pause();
    }
    chain = chain
      .then(() => handle(cmd))
      .catch((err: unknown) => fail(0, err))
      .finally(() => {
        queued--;
        if (paused && queued <= MAX_QUEUED_COMMANDS / 2) {
          paused = false;
          call.resume();
        }
      });
  });
  call.on('end', () => finish());
  call.on('error', (err) => {
    logger.debug({ err }, 'consumer stream error');
    ended = true;
    detach();
  });
  call.on('cancelled', () => {
    ended = true;
    detach();
  });
}
