// Clients follow ownership, not sockets (decision 0091). A broker that is frozen (GC pause, SIGSTOP,
// a stuck disk) or cut off keeps its TCP connections open: the producer's and consumer's streams to it
// see no error, only silence, until it wakes or gRPC's keepalive gives up. Meanwhile its session
// expires and another broker owns the bundle. This watch notices the silence after a short threshold
// and asks *another* broker of the service URL who owns the topic; if the owner changed, the stream
// moves there at once (the producer resends what is pending with its sequence ids; dedup keeps them
// single). Asking the silent broker itself would only wait on it.
import type { ClientContext } from './context.js';
import type { Logger } from './logger.js';

/**
 * How long lookups skip a broker a stream left for silence (ms): past a pause's end, which a woken
 * broker uses to drop what it no longer owns; a probe it answers clears it sooner.
 */
const AVOID_SILENT_OWNER_MS = 10_000;

/** What a producer or consumer stream tells its watch. */
export interface WatchedStream {
  /** The broker the stream is on, while it is open (undefined otherwise: nothing to watch). */
  owner(): string | undefined;
  /**
   * Since when requests of this stream have gone unanswered (ms, the context clock): the oldest
   * unanswered request's start or the last answer, whichever is later; undefined if none waits.
   */
  stalledSince(): number | undefined;
  /** Since when nothing at all came on the stream (consumers: an idle stream is probed). */
  silentSince?(): number | undefined;
  /** Ownership moved: drop the stream and reconnect to `address`. */
  moveTo(address: string): void;
}

/**
 * One stream's watch: a timer every threshold/4 (at least 50 ms) that, when the stream is stalled for
 * `thresholdMs`, makes one ownership check at a time (a lookup through another service host, bounded
 * by `lookupTimeoutMs`), and when it is merely silent that long, probes the owner first (one probe per
 * broker per threshold, shared by the client's streams). Stopped with its stream.
 */
export class OwnershipWatch {
  readonly #ctx: ClientContext;
  readonly #topic: string;
  readonly #stream: WatchedStream;
  readonly #log: Logger;
  readonly #thresholdMs: number;
  #timer: NodeJS.Timeout | undefined;
  #checking = false;
  #lastCheckAt = 0;

  constructor(ctx: ClientContext, topic: string, stream: WatchedStream, log: Logger) {
    this.#ctx = ctx;
    this.#topic = topic;
    this.#stream = stream;
    this.#log = log;
    this.#thresholdMs = ctx.ownershipStallThresholdMs ?? 0;
  }

  start(): void {
    if (this.#thresholdMs <= 0 || this.#timer) return;
    const every = Math.max(50, Math.floor(this.#thresholdMs / 4));
    this.#timer = setInterval(() => this.#tick(every), every);
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #tick(every: number): void {
    if (this.#checking) return;
    const owner = this.#stream.owner();
    if (!owner) return;
    const now = this.#ctx.clock.now();
    if (now - this.#lastCheckAt < every) return;
    const stalled = this.#stream.stalledSince();
    const silent = this.#stream.silentSince?.();
    const isStalled = stalled !== undefined && now - stalled >= this.#thresholdMs;
    const isSilent = !isStalled && silent !== undefined && now - silent >= this.#thresholdMs;
    if (!isStalled && !isSilent) return;
    this.#checking = true;
    void this.#check(owner, isStalled ? 'stalled' : 'silent').catch((err: unknown) => {
      this.#log.debug({ err }, 'ownership check failed');
    }).finally(() => {
      this.#checking = false;
      this.#lastCheckAt = this.#ctx.clock.now();
    });
  }

  async #check(owner: string, why: 'stalled' | 'silent'): Promise<void> {
    const pool = this.#ctx.pool;
    // A silent stream may just be idle: ask the owner itself first (cheap, shared per broker).
    if (why === 'silent' && (await pool.responsive(owner, this.#topic, this.#thresholdMs))) return;
    const now = await pool.ownerElsewhere(this.#topic, owner, this.#lookupTimeoutMs());
    if (!now || now === owner || this.#stream.owner() !== owner || !this.#timer) return;
    this.#log.warn({ from: owner, to: now, why, thresholdMs: this.#thresholdMs }, 'the topic has a new owner while its stream is silent; moving there');
    pool.avoid(owner, AVOID_SILENT_OWNER_MS);
    this.#stream.moveTo(now);
  }

  /**
   * Long enough for a broker's lookup to wait out a bundle being taken over (its acquireWaitMs, 2 s),
   * short enough that a check never outlives the operation timeout.
   */
  #lookupTimeoutMs(): number {
    return Math.min(this.#ctx.operationTimeoutMs, Math.max(3_000, 2 * this.#thresholdMs));
  }
}
