import type { Clock } from '@strata/runtime';

/** Largest limit a policy may set, per second (messages or bytes). */
export const MAX_RATE = 1_000_000_000;

/**
 * A rate limit (messages/s and bytes/s; 0 = no limit) as a token bucket that may go into debt: what was
 * let through is charged after the fact, and the caller holds back until the debt is paid. Publish: a
 * batch the broker has read is always stored, never refused or dropped; its producer's stream is paused
 * (no more reads, so HTTP/2 flow control holds the client back). Dispatch: a subscription stops handing
 * out entries (its backlog grows; other subscriptions are not slowed). The bucket starts empty and holds
 * at most one second of credit (a burst after an idle spell), so over any window of T seconds at most
 * (T + 1) x limit go through, plus what was in flight when it filled.
 */
export class RateLimiter {
  private msgCredit = 0;
  private byteCredit = 0;
  private last: number;
  private throttled = 0;

  constructor(
    private msgsPerSecond: number,
    private bytesPerSecond: number,
    private readonly clock: Clock,
  ) {
    this.last = clock.monotonic();
  }

  get enabled(): boolean {
    return this.msgsPerSecond > 0 || this.bytesPerSecond > 0;
  }

  /** How often a producer was paused by this limit (stats). */
  get throttledCount(): number {
    return this.throttled;
  }

  /** New limits (a policy change): the credit carries over, capped at one second of the new limit. */
  update(msgsPerSecond: number, bytesPerSecond: number): void {
    this.refill();
    this.msgsPerSecond = msgsPerSecond;
    this.bytesPerSecond = bytesPerSecond;
    this.msgCredit = Math.min(this.msgCredit, msgsPerSecond);
    this.byteCredit = Math.min(this.byteCredit, bytesPerSecond);
  }

  /** Charges a stored batch; returns how long its producer must wait before it sends more (ms, 0: none). */
  charge(messages: number, bytes: number): number {
    if (!this.enabled) return 0;
    this.refill();
    if (this.msgsPerSecond > 0) this.msgCredit -= messages;
    if (this.bytesPerSecond > 0) this.byteCredit -= bytes;
    const wait = this.waitMs();
    if (wait > 0) this.throttled++;
    return wait;
  }

  /** How long until the debt is paid (ms, 0: no debt). */
  waitMs(): number {
    if (!this.enabled) return 0;
    this.refill();
    const m = this.msgsPerSecond > 0 && this.msgCredit < 0 ? (-this.msgCredit / this.msgsPerSecond) * 1000 : 0;
    const b = this.bytesPerSecond > 0 && this.byteCredit < 0 ? (-this.byteCredit / this.bytesPerSecond) * 1000 : 0;
    return Math.ceil(Math.max(m, b));
  }

  private refill(): void {
    const now = this.clock.monotonic();
    const seconds = Math.max(0, now - this.last) / 1000;
    this.last = now;
    if (this.msgsPerSecond > 0) this.msgCredit = Math.min(this.msgsPerSecond, this.msgCredit + seconds * this.msgsPerSecond);
    if (this.bytesPerSecond > 0) this.byteCredit = Math.min(this.bytesPerSecond, this.byteCredit + seconds * this.bytesPerSecond);
  }
}
