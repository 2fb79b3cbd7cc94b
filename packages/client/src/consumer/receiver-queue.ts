// Invariants: a message is either buffered here or has been handed out, exactly once, through `handOut`
// (which gives its permit share back and starts its ack-timeout clock), unless removeTopic() returned it
// to be dropped. Waiting receive() callers are served in arrival order and only while the queue is empty,
// so messages reach the application in the order the broker delivered them.
import { abortError, ClientErrorCode, operationError } from '../errors.js';
import type { Message } from '../message.js';
import { MessageWaiters, Queue, type Clock } from '../util.js';

/** Per-call options (a Strata extension). */
export interface ReceiveOptions {
  signal?: AbortSignal;
}

/** The consumer's one receiver queue, fed by all its topic consumers, read by receive() and batchReceive(). */
export class ReceiverQueue {
  readonly #clock: Clock;
  readonly #handOut: (m: Message) => void;
  readonly #queue = new Queue<Message>();
  readonly #waiters = new MessageWaiters<Message>();
  /** batchReceive() calls waiting for more messages (or the close). */
  #notify: Array<() => void> = [];
  #closed = false;

  constructor(clock: Clock, handOut: (m: Message) => void) {
    this.#clock = clock;
    this.#handOut = handOut;
  }

  /** Messages of one entry, in order: to waiting callers first, buffered otherwise. */
  push(messages: Message[]): void {
    for (const m of messages) {
      const w = this.#waiters.shift();
      if (w) {
        this.#handOut(m);
        w.resolve(m);
      } else {
        this.#queue.push(m);
      }
    }
    for (const n of this.#notify.splice(0)) n();
  }

  /** Takes the buffered messages of one topic out (the caller drops them). */
  removeTopic(topic: string): Message[] {
    return this.#queue.filter((m) => m.getMessageId().topic !== topic);
  }

  receive(timeout: number | undefined, signal: AbortSignal | undefined): Promise<Message> {
    const op = 'Failed to receive message';
    if (this.#closed) return Promise.reject(operationError(op, ClientErrorCode.ALREADY_CLOSED));
    if (timeout !== undefined && (typeof timeout !== 'number' || timeout < 0)) return Promise.reject(operationError(op, ClientErrorCode.INVALID_ARGUMENT, 'timeout must be a number of milliseconds'));
    if (signal?.aborted) return Promise.reject(abortError(signal, op));
    const m = this.#queue.shift();
    if (m) {
      this.#handOut(m);
      return Promise.resolve(m);
    }
    return this.#waiters.wait(op, timeout, signal);
  }

  /** Up to maxNumMessages (or maxNumBytes) messages, waiting at most timeoutMs for them; maybe fewer, or none. */
  async receiveBatch(policy: { maxNumMessages: number; maxNumBytes: number; timeoutMs: number }, signal: AbortSignal | undefined): Promise<Message[]> {
    const op = 'Failed to batch receive message';
    const { maxNumMessages, maxNumBytes, timeoutMs } = policy;
    const deadline = this.#clock.now() + timeoutMs;
    const out: Message[] = [];
    let bytes = 0;
    for (;;) {
      while (out.length < maxNumMessages && (maxNumBytes <= 0 || bytes < maxNumBytes)) {
        const m = this.#queue.shift();
        if (!m) break;
        this.#handOut(m);
        out.push(m);
        bytes += m.size;
      }
      const full = out.length >= maxNumMessages || (maxNumBytes > 0 && bytes >= maxNumBytes);
      const left = deadline - this.#clock.now();
      if (full || left <= 0 || this.#closed) return out;
      if (signal?.aborted) throw abortError(signal, op);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          resolve();
        }
        signal?.addEventListener('abort', done, { once: true });
        this.#notify.push(done);
      });
    }
  }

  /** Fails waiting receive() calls with `err` and ends waiting batchReceive() calls. */
  close(err: unknown): void {
    this.#closed = true;
    this.#waiters.rejectAll(err);
    for (const n of this.#notify.splice(0)) n();
  }
}
