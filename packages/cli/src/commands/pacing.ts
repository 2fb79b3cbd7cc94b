/**
 * Send pacing and send-time stamps for `strata perf`. Pure: the caller passes the time in.
 */

/**
 * Spaces messages evenly at `rate` per second. When the sender falls behind (a slow send, a GC pause),
 * it catches up with a burst of at most `maxBurstMs` worth of messages and then drops the missed schedule,
 * rather than firing an unbounded burst that would measure the burst instead of the rate.
 */
export class Pacer {
  private next: number;
  private readonly intervalMs: number;

  constructor(rate: number, nowMs: number, private readonly maxBurstMs = 100) {
    this.intervalMs = rate > 0 ? 1000 / rate : 0;
    this.next = nowMs;
  }

  /** Milliseconds to wait before the next message may go; 0 means "send now" and books the slot. */
  delayMs(nowMs: number): number {
    if (this.intervalMs === 0) return 0;
    if (this.next > nowMs) return this.next - nowMs;
    if (nowMs - this.next > this.maxBurstMs) this.next = nowMs - this.maxBurstMs;
    this.next += this.intervalMs;
    return 0;
  }
}

const MAGIC = Buffer.from('STRPERF1', 'latin1');
/** Bytes a stamp takes at the front of a payload. Smaller payloads are sent unstamped. */
export const STAMP_BYTES = MAGIC.length + 8;

/** Wall-clock time in microseconds, sub-millisecond, comparable across processes on one machine. */
export function wallClockMicros(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/**
 * A copy of `payload` whose first bytes carry the send time, so that a consumer (in this process or
 * another on the same clock) measures end-to-end latency in microseconds instead of the millisecond
 * publish timestamp. Payloads shorter than STAMP_BYTES come back unchanged.
 */
export function stampPayload(payload: Buffer, sentAtUs: number): Buffer {
  if (payload.length < STAMP_BYTES) return payload;
  const out = Buffer.allocUnsafe(payload.length);
  payload.copy(out, STAMP_BYTES, STAMP_BYTES);
  MAGIC.copy(out, 0);
  out.writeDoubleLE(sentAtUs, MAGIC.length);
  return out;
}

/** The send time stamped by stampPayload, or undefined for a payload without a stamp. */
export function readStamp(payload: Buffer): number | undefined {
  if (payload.length < STAMP_BYTES || !payload.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const us = payload.readDoubleLE(MAGIC.length);
  return Number.isFinite(us) ? us : undefined;
}
