// The rate limiter alone, on an injected clock (end to end: test/publish-rate.test.ts, test/dispatch-rate.test.ts).
import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../src/policies/rate-limiter.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, monotonic: () => now, advance: (ms: number) => { now += ms; } };
}

describe('RateLimiter', () => {
  it('starts empty: the first batch puts it in debt for its cost at the limit', () => {
    const c = clock();
    const l = new RateLimiter(100, 0, c);
    expect(l.charge(10, 1000)).toBe(100); // 10 messages at 100/s
    c.advance(60);
    expect(l.waitMs()).toBe(40);
    c.advance(40);
    expect(l.waitMs()).toBe(0);
  });

  it('the tighter of messages/s and bytes/s decides', () => {
    const c = clock();
    const l = new RateLimiter(1000, 1000, c);
    expect(l.charge(1, 500)).toBe(500);
    expect(l.throttledCount).toBe(1);
  });

  it('keeps at most one second of credit after an idle spell', () => {
    const c = clock();
    const l = new RateLimiter(100, 0, c);
    c.advance(60_000);
    expect(l.charge(100, 0)).toBe(0); // the burst: one second's worth
    expect(l.charge(1, 0)).toBe(10);
  });

  it('over a long flood, lets through the limit per second', () => {
    const c = clock();
    const l = new RateLimiter(250, 0, c);
    let sent = 0;
    for (let t = 0; t < 10_000;) {
      const wait = l.charge(5, 0);
      sent += 5;
      c.advance(Math.max(1, wait));
      t += Math.max(1, wait);
    }
    expect(sent).toBeGreaterThanOrEqual(2_500 - 5);
    expect(sent).toBeLessThanOrEqual(2_500 + 5);
  });

  it('no limit: never waits; a new limit applies at once', () => {
    const c = clock();
    const l = new RateLimiter(0, 0, c);
    expect(l.charge(1_000_000, 1e9)).toBe(0);
    l.update(10, 0);
    expect(l.charge(10, 0)).toBe(1000);
    l.update(0, 0);
    expect(l.waitMs()).toBe(0);
  });
});
