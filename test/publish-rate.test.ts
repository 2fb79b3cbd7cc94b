// Publish rate limits (issue 16, item 1, per topic from the namespace policy), against a real standalone:
// a producer sending as fast as it can is held to the limit by backpressure on its stream (within 10%
// over 10 s), nothing is refused or lost, a topic of another namespace is not slowed, and the limit
// can be set and removed at run time over gRPC (the CLI's path) and Pulsar's REST API.
import { describe, expect, it } from 'vitest';
import { unique, useStandalone } from './harness/standalone.js';
import type { Producer } from '@strata/client';

const env = useStandalone();

/** Sends as fast as the producer lets it (up to `inFlight` pending) for `ms`; acknowledged send times. */
async function flood(producer: Producer, ms: number, inFlight = 200): Promise<number[]> {
  const acked: number[] = [];
  const until = Date.now() + ms;
  const lanes = Array.from({ length: inFlight }, async () => {
    while (Date.now() < until) {
      await producer.send({ data: Buffer.alloc(100) });
      acked.push(Date.now());
    }
  });
  await Promise.all(lanes);
  return acked;
}

describe('publish rate limit', () => {
  it('holds a flooding producer within 10% of the namespace limit; other namespaces run free', async () => {
    const limited = `public/${unique('limited')}`;
    const free = `public/${unique('free')}`;
    await env.admin.createNamespace(limited);
    await env.admin.createNamespace(free);
    const policies = await env.admin.getPolicies(limited);
    await env.admin.setPolicies(limited, { ...policies, publishRateMsgsPerSecond: 200 });
    const slow = await env.client.createProducer({ topic: `persistent://${limited}/t`, batchingEnabled: false, sendTimeoutMs: 60_000 });
    const fast = await env.client.createProducer({ topic: `persistent://${free}/t`, batchingEnabled: false, sendTimeoutMs: 60_000 });
    const started = Date.now();
    const [slowAcks, fastAcks] = await Promise.all([flood(slow, 11_000), flood(fast, 11_000)]);
    // The rate over the 10 s after the first second (the bucket starts empty; nothing to warm up).
    const window = (acks: number[]) => acks.filter((t) => t >= started + 1_000 && t < started + 11_000).length / 10;
    const slowRate = window(slowAcks);
    const fastRate = window(fastAcks);
    console.log(JSON.stringify({ limit: 200, slowRate, fastRate }));
    expect(slowRate).toBeGreaterThanOrEqual(180);
    expect(slowRate).toBeLessThanOrEqual(220);
    expect(fastRate).toBeGreaterThan(2 * slowRate);
    await Promise.all([slow.close(), fast.close()]);
  }, 60_000);

  it('is set, shown and removed at run time, over gRPC and over REST; bad values are refused', async () => {
    const namespace = `public/${unique('rest')}`;
    await env.admin.createNamespace(namespace);
    const rest = (method: string, body?: unknown) => fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/publishRate`, {
      method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    expect((await rest('GET')).status).toBe(204);
    expect((await rest('POST', { publishThrottlingRateInMsg: 50, publishThrottlingRateInByte: -1 })).status).toBe(204);
    expect(await (await rest('GET')).json()).toEqual({ publishThrottlingRateInMsg: 50, publishThrottlingRateInByte: -1 });
    expect(await env.admin.getPolicies(namespace)).toMatchObject({ publishRateMsgsPerSecond: 50, publishRateBytesPerSecond: 0 });
    // Loaded topics follow at once: 50 msg/s for 2 s lets through about 100.
    const producer = await env.client.createProducer({ topic: `persistent://${namespace}/t`, batchingEnabled: false, sendTimeoutMs: 60_000 });
    const t0 = Date.now();
    const throttled = await flood(producer, 2_000, 50);
    expect(throttled.filter((t) => t < t0 + 2_000).length).toBeLessThanOrEqual(130);
    expect((await rest('DELETE')).status).toBe(204);
    expect((await rest('GET')).status).toBe(204);
    const t1 = Date.now();
    const unthrottled = await flood(producer, 2_000, 50);
    expect(unthrottled.filter((t) => t < t1 + 2_000).length).toBeGreaterThan(300);
    expect((await rest('POST', { publishThrottlingRateInMsg: 'many' })).status).toBe(400);
    const p = await env.admin.getPolicies(namespace);
    await expect(env.admin.setPolicies(namespace, { ...p, publishRateMsgsPerSecond: 2_000_000_000 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await producer.close();
  }, 60_000);
});
