// The client's token source (decision 0090): one supplier answer reused by connections opened within
// TOKEN_REUSE_MS, a fresh one after that or after a refusal, and a failing supplier asked again.
import { describe, expect, it } from 'vitest';
import { TOKEN_REUSE_MS, TokenSource } from '../src/auth.js';

describe('TokenSource', () => {
  it('reuses an answer for new connections within the reuse window, asks again after it', async () => {
    let now = 1_000;
    let calls = 0;
    const source = new TokenSource(() => `t${++calls}`, () => now);
    expect(await source.forConnection()).toBe('t1');
    now += TOKEN_REUSE_MS - 1;
    expect(await source.forConnection()).toBe('t1');
    now += 1;
    expect(await source.forConnection()).toBe('t2');
    expect(await source.current()).toBe('t2');
    expect(calls).toBe(2);
  });

  it('asks again after the broker refused the token in use, not after an older one was refused', async () => {
    let calls = 0;
    const source = new TokenSource(async () => `t${++calls}`, () => 0);
    const first = source.current();
    expect(await first).toBe('t1');
    source.refused(first);
    const second = source.forConnection();
    expect(await second).toBe('t2');
    source.refused(first);
    expect(await source.current()).toBe('t2');
  });

  it('a supplier that throws or returns no string rejects, and is asked again next time', async () => {
    let calls = 0;
    const source = new TokenSource(() => {
      calls++;
      if (calls === 1) throw new Error('vault down');
      if (calls === 2) return 42 as unknown as string;
      return 'ok';
    }, () => 0);
    await expect(source.forConnection()).rejects.toThrow('vault down');
    await expect(source.forConnection()).rejects.toThrow('did not return a string');
    expect(await source.forConnection()).toBe('ok');
  });
});
