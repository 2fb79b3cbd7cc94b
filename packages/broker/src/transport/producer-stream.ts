import type * as grpc from '@grpc/grpc-js';
import { asStrataError, ErrorCode, type Logger } from '@strata/runtime';
import type { BrokerService } from '../topics/broker-service.js';
import { InvalidRequestError, ServiceNotReadyError, TooManyRequestsError } from '../errors.js';
import type { ProducerCommand__Output } from '../generated/strata/broker/v1/ProducerCommand.js';
import type { ProducerEvent } from '../generated/strata/broker/v1/ProducerEvent.js';
import type { SendBatch__Output } from '../generated/strata/broker/v1/SendBatch.js';
import { TopicName } from '../names.js';
import type { AccessMode, Producer, PublishResult } from '../topics/producer.js';
import type { BrokerMetrics } from '../metrics.js';
import type { Topic } from '../topics/topic.js';

/**
 * Publishes accepted but not yet answered, across every producer stream of the broker. At the limit
 * a stream stops reading (HTTP/2 flow control then holds the client's writes) until publishes finish:
 * the broker delays rather than rejects, so a producer's order is never broken by a rejection.
 */
export class PublishLimiter {
  private pending = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly max: number) {}

  get inFlight(): number {
    return this.pending;
  }

  full(): boolean {
    return this.pending >= this.max;
  }

  acquire(): void {
    this.pending++;
  }

  release(): void {
    this.pending--;
    if (!this.full()) {
      for (const w of [...this.waiting]) {
        this.waiting.delete(w);
        w();
      }
    }
  }

  /** Calls `resume` once the broker-wide count is below the limit. */
  whenFree(resume: () => void): void {
    this.waiting.add(resume);
  }

  forget(resume: () => void): void {
    this.waiting.delete(resume);
  }
}

export interface ProducerStreamContext {
  service: BrokerService;
  limiter: PublishLimiter;
  maxPendingPerProducer: number;
  maxMessageBytes: number;
  logger: Logger;
  metrics?: BrokerMetrics;
}

type Call = grpc.ServerDuplexStream<ProducerCommand__Output, ProducerEvent>;

interface InFlight {
  startMs: number;
  sequenceId: number;
  highestSequenceId: number;
  messages: number;
  bytes: number;
  done: boolean;
  result?: PublishResult;
  error?: unknown;
}

const MAX_HELD_COMMANDS = 1000;

/** Errors about the batch itself: the stream and the producer stay usable. */
const BATCH_ERRORS: ReadonlySet<string> = new Set([ErrorCode.INVALID_ARGUMENT, ErrorCode.TOO_LARGE, ErrorCode.NOT_ALLOWED]);

/**
 * One Produce stream = one producer. Order of events: ProducerOpened answers OpenProducer; receipts
 * and SendErrors come in the order the batches were sent. A storage failure answers that batch and
 * every later one with SendError and then closes the stream (Closed), so the client reconnects and
 * resends from its first unacknowledged batch in order.
 */
export function handleProduce(call: Call, ctx: ProducerStreamContext): void {
  const logger = ctx.logger.child({ component: 'producer-stream', peer: call.getPeer() });
  let topic: Topic | undefined;
  let producer: Producer | undefined;
  let opening = false;
  /** Aborts when the stream ends: stops a WAIT_FOR_EXCLUSIVE wait. */
  const streamGone = new AbortController();
  let ended = false;
  let failed: { code: string; message: string } | undefined;
  let paused = false;
  /** Set by CloseProducer or the client's half-close: end the stream once every receipt is out. */
  let closeWhenDrained: { requestId?: number } | undefined;
  const queue: InFlight[] = [];

  const write = (event: ProducerEvent) => {
    if (ended) return;
    try {
      call.write(event);
    } catch (err) {
      logger.debug({ err }, 'write to a closed producer stream');
    }
  };

  const finish = (closedReason?: string, redirectBrokerUrl = '', errorCode = '') => {
    if (ended) return;
    if (closedReason !== undefined) write({ closed: { reason: closedReason, redirectBrokerUrl, errorCode } });
    ended = true;
    cleanup();
    try {
      call.end();
    } catch {
      // already gone
    }
  };

  const cleanup = () => {
    streamGone.abort();
    if (throttleTimer) clearTimeout(throttleTimer);
    if (producer && topic) topic.removeProducer(producer);
    ctx.limiter.forget(resume);
  };

  // Publish rate limit: a stream whose topic's bucket is in debt stays paused until it is paid.
  let throttleTimer: NodeJS.Timeout | undefined;
  const throttle = (waitMs: number) => {
    if (!paused) {
      paused = true;
      call.pause();
    }
    if (throttleTimer) clearTimeout(throttleTimer);
    throttleTimer = setTimeout(() => {
      throttleTimer = undefined;
      resume();
    }, waitMs);
  };

  const resume = () => {
    if (!paused || ended) return;
    if (queue.length >= ctx.maxPendingPerProducer) return;
    const debt = topic?.publishRate?.waitMs() ?? 0;
    if (debt > 0) {
      throttle(debt);
      return;
    }
    if (ctx.limiter.full()) {
      ctx.limiter.whenFree(resume);
      return;
    }
    paused = false;
    call.resume();
  };

  const maybePause = () => {
    if (paused) return;
    if (queue.length >= ctx.maxPendingPerProducer || ctx.limiter.full()) {
      paused = true;
      call.pause();
      if (ctx.limiter.full()) ctx.limiter.whenFree(resume);
    }
  };

  /** Answers finished publishes in send order. */
  const flush = () => {
    while (queue.length > 0 && (queue[0] as InFlight).done) {
      const item = queue.shift() as InFlight;
      ctx.limiter.release();
      const m = ctx.metrics;
      if (m) {
        const result = item.error !== undefined ? asStrataError(item.error).code : (item.result?.kind ?? 'stored');
        m.publishedEntries.inc({ result });
        if (item.error === undefined) m.publishLatency.observe((performance.now() - item.startMs) / 1000);
        if (item.result?.kind === 'stored') {
          m.publishedMessages.inc(item.messages);
          m.publishedBytes.inc(item.bytes);
        }
      }
      if (item.error !== undefined) {
        const e = asStrataError(item.error);
        write({ sendError: { sequenceId: item.sequenceId, errorCode: e.code, message: e.message } });
        if (!BATCH_ERRORS.has(e.code) && !failed) {
          failed = { code: e.code, message: e.message };
          logger.warn({ err: e, producer: producer?.name }, 'publish failed; closing the producer stream');
        }
      } else if (item.result?.kind === 'stored') {
        write({
          receipt: {
            sequenceId: item.sequenceId, highestSequenceId: item.highestSequenceId,
            messageId: { ledgerId: item.result.ledgerId, entryId: item.result.entryId, batchIndex: -1, partition: topic?.name.partitionIndex ?? -1 },
          },
        });
      } else {
        // Duplicate (dedup): nothing stored, id -1:-1 as Pulsar answers.
        write({
          receipt: {
            sequenceId: item.sequenceId, highestSequenceId: item.highestSequenceId,
            messageId: { ledgerId: -1, entryId: -1, batchIndex: -1, partition: topic?.name.partitionIndex ?? -1 },
          },
        });
      }
    }
    if (queue.length === 0 && closeWhenDrained && !opening && held.length === 0) {
      if (closeWhenDrained.requestId !== undefined) write({ success: { requestId: closeWhenDrained.requestId } });
      finish();
    } else if (failed && queue.length === 0) {
      finish(`publish failed (${failed.code}): ${failed.message}`);
    } else {
      resume();
    }
  };

  const onSend = (send: SendBatch__Output) => {
    const sequenceId = Number(send.metadata?.sequenceId ?? 0);
    const highestSequenceId = Number(send.metadata?.highestSequenceId ?? 0);
    const item: InFlight = {
      startMs: performance.now(), sequenceId, highestSequenceId, done: false,
      messages: Number(send.metadata?.numMessages ?? 0), bytes: Buffer.isBuffer(send.batch) ? send.batch.length : 0,
    };
    queue.push(item);
    ctx.limiter.acquire();
    const settle = (result: PublishResult | undefined, error: unknown) => {
      item.done = true;
      item.result = result;
      item.error = error;
      flush();
    };
    if (!ctx.service.serving()) {
      // Woken after losing the session: the topic closed just now (the producer was told); never store.
      settle(undefined, new ServiceNotReadyError('this broker lost its metadata session; look the topic up again'));
      finish('this broker lost its metadata session');
      return;
    }
    try {
      if (!producer || !topic) throw new InvalidRequestError('send before the producer was opened');
      if (failed) throw new TooManyRequestsError(`producer is failing after ${failed.code}; reconnect and resend`);
      const batch = send.batch;
      if (!Buffer.isBuffer(batch) || batch.length === 0) throw new InvalidRequestError('empty batch');
      topic.publish(producer, send.metadata as NonNullable<SendBatch__Output['metadata']>, batch).then(
        (r) => settle(r, undefined),
        (err: unknown) => settle(undefined, err),
      );
      const waitMs = topic.publishRate?.charge(item.messages, item.bytes) ?? 0;
      if (waitMs > 0) throttle(waitMs);
    } catch (err) {
      settle(undefined, err);
    }
    maybePause();
  };

  const onOpen = async (open: NonNullable<ProducerCommand__Output['open']>) => {
    const requestId = open.requestId;
    if (producer || opening) {
      write({ error: { requestId, errorCode: ErrorCode.INVALID_ARGUMENT, message: 'this stream already has a producer' } });
      return;
    }
    opening = true;
    try {
      const name = TopicName.parse(open.topic);
      if (typeof open.accessMode !== 'string') throw new InvalidRequestError(`unknown access mode ${String(open.accessMode)}`);
      const t = await ctx.service.getTopic(name, { create: true });
      const attach = () => t.addProducer({
        name: open.producerName, accessMode: open.accessMode as AccessMode, address: call.getPeer(),
        sink: { closed: (reason, redirect) => finish(reason, redirect), fenced: (reason) => finish(reason, '', ErrorCode.FENCED) },
      });
      let p: Producer;
      if (open.accessMode === 'WAIT_FOR_EXCLUSIVE') {
        // Wait our turn; a SHARED producer that slips in first just means waiting again.
        for (;;) {
          await t.waitForNoProducers(streamGone.signal);
          try {
            p = attach();
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== ErrorCode.FENCED) throw err;
          }
        }
      } else {
        p = attach();
      }
      if (ended) {
        t.removeProducer(p);
        return;
      }
      topic = t;
      producer = p;
      write({ opened: { requestId, producerName: p.name, lastSequenceId: t.lastSequenceId(p.name), maxMessageSize: ctx.maxMessageBytes } });
      logger.info({ topic: t.name.toString(), producer: p.name }, 'producer opened');
    } catch (err) {
      const e = asStrataError(err);
      write({ error: { requestId, errorCode: e.code, message: e.message } });
    } finally {
      opening = false;
    }
  };

  const onClose = (requestId: number) => {
    if (producer && topic) topic.removeProducer(producer);
    closeWhenDrained = { requestId };
    flush();
  };

  // Commands that arrive while OpenProducer is in progress wait for it (a client may pipeline its
  // first sends behind the open); past MAX_HELD_COMMANDS the stream is paused.
  const held: ProducerCommand__Output[] = [];
  let heldPaused = false;
  const dispatch = (cmd: ProducerCommand__Output) => {
    if (ended) return;
    if (opening) {
      held.push(cmd);
      if (held.length >= MAX_HELD_COMMANDS && !heldPaused) {
        heldPaused = true;
        call.pause();
      }
      return;
    }
    try {
      switch (cmd.command) {
        case 'open':
          void onOpen(cmd.open as NonNullable<ProducerCommand__Output['open']>).finally(() => {
            while (held.length > 0 && !opening) dispatch(held.shift() as ProducerCommand__Output);
            if (heldPaused && held.length === 0) {
              heldPaused = false;
              call.resume();
            }
            // A half-close that came during the open is honoured now.
            flush();
          });
          break;
        case 'send':
          onSend(cmd.send as SendBatch__Output);
          break;
        case 'close':
          onClose(cmd.close?.requestId ?? 0);
          break;
        default:
          write({ error: { requestId: 0, errorCode: ErrorCode.INVALID_ARGUMENT, message: 'empty producer command' } });
      }
    } catch (err) {
      logger.warn({ err }, 'producer command failed');
    }
  };
  call.on('data', dispatch);
  call.on('end', () => {
    // The client is done sending; it still gets the receipts it is owed.
    closeWhenDrained ??= {};
    flush();
  });
  call.on('error', (err) => {
    logger.debug({ err }, 'producer stream error');
    ended = true;
    cleanup();
  });
  call.on('cancelled', () => {
    ended = true;
    cleanup();
  });
}
