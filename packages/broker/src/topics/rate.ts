import type { Clock } from '@strata/runtime';

/**
 * Messages and bytes per second over the last WINDOW_S seconds, in one-second buckets updated on
 * record (no timer). Memory is fixed: WINDOW_S buckets.
 */
const WINDOW_S = 10;

export class RateMeter {
  private readonly msgs = new Float64Array(WINDOW_S);
  private readonly bytes = new Float64Array(WINDOW_S);
  private lastSecond = 0;
  private readonly startSecond: number;
  totalMsgs = 0;
  totalBytes = 0;

  constructor(private readonly clock: Clock) {
    this.startSecond = Math.floor(clock.now() / 1000);
    this.lastSecond = this.startSecond;
  }

  record(msgs: number, bytes: number): void {
    this.advance();
    const i = this.lastSecond % WINDOW_S;
    this.msgs[i] = (this.msgs[i] ?? 0) + msgs;
    this.bytes[i] = (this.bytes[i] ?? 0) + bytes;
    this.totalMsgs += msgs;
    this.totalBytes += bytes;
  }

  /** Rates over the complete seconds of the window (the current second is partial and left out). */
  rates(): { msgRate: number; byteRate: number } {
    this.advance();
    const span = Math.min(WINDOW_S - 1, this.lastSecond - this.startSecond);
    if (span <= 0) return { msgRate: 0, byteRate: 0 };
    let m = 0;
    let b = 0;
    for (let s = this.lastSecond - span; s < this.lastSecond; s++) {
      m += this.msgs[s % WINDOW_S] ?? 0;
      b += this.bytes[s % WINDOW_S] ?? 0;
    }
    return { msgRate: m / span, byteRate: b / span };
  }

  private advance(): void {
    const now = Math.floor(this.clock.now() / 1000);
    if (now <= this.lastSecond) return;
    for (let s = Math.max(this.lastSecond + 1, now - WINDOW_S + 1); s <= now; s++) {
      this.msgs[s % WINDOW_S] = 0;
      this.bytes[s % WINDOW_S] = 0;
    }
    this.lastSecond = now;
  }
}
