import { abortError, ClientError, ClientErrorCode, operationError } from './errors.js';

/** Injected time, so that core logic can be driven by tests. */
export interface Clock {
  now(): number;
}
export const systemClock: Clock = { now: () => Date.now() };

/** Injected randomness (jitter). Returns [0, 1). */
export type Random = () => number;

/**
 * Bounded exponential backoff with full jitter: attempt n waits a random time in
 * [base/2, base] where base = min(maxMs, initialMs * 2^n).
 */
export class Backoff {
  #attempt = 0;
  constructor(private readonly initialMs: number, private readonly maxMs: number, private readonly random: Random = Math.random) {}

  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(base / 2 + (base / 2) * this.random());
  }

  reset(): void {
    this.#attempt = 0;
  }

  get attempts(): number {
    return this.#attempt;
  }
}

interface ReconnectOptions {
  backoff: Backoff;
  signal: AbortSignal;
  stillConnecting: () => boolean;
  connectOnce: (redirect: string | undefined) => Promise<void>;
  onFailure: (err: unknown, attempt: number) => void;
}

/**
 * The reconnection of a producer or consumer after its stream ended: one loop at a time (start()
 * while one runs does nothing: that loop already retries until connected or closed).
 */
export class Reconnection {
  #running = false;

  constructor(private readonly options: ReconnectOptions) {}

  async start(redirect: string | undefined): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      await reconnectLoop(this.options, redirect);
    } finally {
      this.#running = false;
    }
  }
}

/**
 * Back off (except before a first attempt at a redirect the broker named), try once, repeat while
 * `stillConnecting()`. A failed attempt forgets the redirect, so the next one looks the topic up again.
 */
async function reconnectLoop(options: ReconnectOptions, firstRedirect: string | undefined): Promise<void> {
  let redirect = firstRedirect;
  let first = true;
  while (options.stillConnecting()) {
    if (!(first && redirect)) await sleep(options.backoff.next(), options.signal).catch(() => undefined);
    first = false;
    if (!options.stillConnecting()) break;
    try {
      await options.connectOnce(redirect);
    } catch (err) {
      options.onFailure(err, options.backoff.attempts);
      redirect = undefined;
    }
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Waits `ms`, or rejects when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, 'Sleep'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal, 'Sleep'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Requests on a stream that expect an answer carrying the same request id. Bounded: at most
 * `max` outstanding; each times out after `timeoutMs`.
 */
export class PendingRequests<T = void> {
  #next = 1;
  readonly #pending = new Map<number, { d: Deferred<T>; timer: NodeJS.Timeout }>();

  constructor(private readonly timeoutMs: number, private readonly makeTimeout: () => ClientError, private readonly max = 10_000) {}

  start(): { id: number; promise: Promise<T> } {
    if (this.#pending.size >= this.max) throw new ClientError('TOO_MANY_REQUESTS', `more than ${this.max} requests outstanding`);
    const id = this.#next++;
    const d = deferred<T>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      d.reject(this.makeTimeout());
    }, this.timeoutMs);
    timer.unref?.();
    this.#pending.set(id, { d, timer });
    return { id, promise: d.promise };
  }

  resolve(id: number, value: T): boolean {
    const p = this.#pending.get(id);
    if (!p) return false;
    clearTimeout(p.timer);
    this.#pending.delete(id);
    p.d.resolve(value);
    return true;
  }

  reject(id: number, err: unknown): boolean {
    const p = this.#pending.get(id);
    if (!p) return false;
    clearTimeout(p.timer);
    this.#pending.delete(id);
    p.d.reject(err);
    return true;
  }

  rejectAll(err: unknown): void {
    for (const [id] of this.#pending) this.reject(id, err);
  }

  get size(): number {
    return this.#pending.size;
  }
}

/** A FIFO with O(1) shift, for receiver queues. */
export class Queue<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Keeps only the items for which keep() is true. */
  filter(keep: (item: T) => boolean): T[] {
    const removed: T[] = [];
    const kept: T[] = [];
    for (let i = this.#head; i < this.#items.length; i++) {
      const item = this.#items[i] as T;
      (keep(item) ? kept : removed).push(item);
    }
    this.#items = kept;
    this.#head = 0;
    return removed;
  }

  get length(): number {
    return this.#items.length - this.#head;
  }
}

/** Callers of receive() / readNext() waiting for the next message, served in the order they came. */
export class MessageWaiters<T> {
  #waiters: Array<{ resolve(m: T): void; reject(err: unknown): void }> = [];

  /** Waits for a message given to the waiter shift() returns; `op: TimeOut` after `timeout` ms, or on abort. */
  wait(op: string, timeout: number | undefined, signal: AbortSignal | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
      };
      const waiter = {
        resolve: (m: T) => { cleanup(); resolve(m); },
        reject: (err: unknown) => { cleanup(); reject(err); },
      };
      const onAbort = () => waiter.reject(abortError(signal, op));
      if (timeout !== undefined && timeout > 0) timer = setTimeout(() => waiter.reject(operationError(op, ClientErrorCode.TIMEOUT)), timeout);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** The longest-waiting caller, taken off the list, or undefined when nobody waits. */
  shift(): { resolve(m: T): void; reject(err: unknown): void } | undefined {
    return this.#waiters.shift();
  }

  rejectAll(err: unknown): void {
    for (const w of [...this.#waiters]) w.reject(err);
  }
}
