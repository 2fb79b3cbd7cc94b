// Dispatch rate limits per subscription (issue 16, part of item 2; Pulsar's subscriptionDispatchRate),
// against a real standalone: a limited subscription is handed out at the limit (within 10% over 5 s) and
// its backlog grows; two subscriptions each get the limit (it is not shared) and a namespace without it
// runs free; the limit changes at run time over REST.
import { describe, expect, it } from 'vitest';
import { unique, useStandalone } from './harness/standalone.js';
import type { Consumer } from '@strata/client';

const env = useStandalone();

async function setDispatchRate(namespace: string, body: unknown): Promise<number> {
  const res = await fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/subscriptionDispatchRate`, {
    method: body === undefined ? 'DELETE' : 'POST',
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  return res.status;
}

/** Receives and acks for `ms`; the receive times. */
async function drainFor(consumer: Consumer, ms: number): Promise<number[]> {
  const times: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    try {
      const m = await consumer.receive(Math.max(1, until - Date.now()));
      times.push(Date.now());
      consumer.acknowledge(m).catch(() => undefined);
    } catch {
      break;
    }
  }
  return times;
}

describe('subscription dispatch rate limit', () => {
  it('holds each subscription to the limit on its own; their backlogs grow; another namespace runs free', async () => {
    const namespace = `public/${unique('dispatch')}`;
    const other = `public/${unique('free')}`;
    for (const ns of [namespace, other]) expect((await fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${ns}`, { method: 'PUT' })).status).toBe(204);
    expect(await setDispatchRate(namespace, { dispatchThrottlingRateInMsg: 100, dispatchThrottlingRateInByte: -1, ratePeriodInSecond: 1 })).toBe(204);
    const topic = `persistent://${namespace}/t`;
    const freeTopic = `persistent://${other}/t`;
    const a = await env.client.subscribe({ topic, subscription: 'a', subscriptionInitialPosition: 'Earliest' });
    const b = await env.client.subscribe({ topic, subscription: 'b', subscriptionInitialPosition: 'Earliest' });
    const free = await env.client.subscribe({ topic: freeTopic, subscription: 'free', subscriptionInitialPosition: 'Earliest' });
    const producer = await env.client.createProducer({ topic, batchingEnabled: false, maxPendingMessages: 5_000 });
    const freeProducer = await env.client.createProducer({ topic: freeTopic, batchingEnabled: false, maxPendingMessages: 5_000 });
    await Promise.all(Array.from({ length: 2_000 }, (_, i) => Promise.all([producer.send({ data: Buffer.from(String(i)) }), freeProducer.send({ data: Buffer.from(String(i)) })])));
    const started = Date.now();
    const [aTimes, bTimes, freeTimes] = await Promise.all([drainFor(a, 6_000), drainFor(b, 6_000), drainFor(free, 6_000)]);
    const rate = (times: number[]) => times.filter((t) => t >= started + 1_000 && t < started + 6_000).length / 5;
    console.log(JSON.stringify({ limit: 100, a: rate(aTimes), b: rate(bTimes), freeReceived: freeTimes.length }));
    for (const times of [aTimes, bTimes]) {
      expect(rate(times)).toBeGreaterThanOrEqual(90);
      expect(rate(times)).toBeLessThanOrEqual(110);
    }
    expect(freeTimes.length).toBe(2_000); // every message, unthrottled
    // A limited subscription's backlog is what it has not been given yet.
    const stats = await (await fetch(`${env.standalone.webServiceUrl}/admin/v2/persistent/${namespace}/t/stats`)).json() as { subscriptions: Record<string, { msgBacklog: number }> };
    expect(stats.subscriptions.a!.msgBacklog).toBeGreaterThan(1_000);
    // Lifted at run time: the rest comes at once.
    expect(await setDispatchRate(namespace, undefined)).toBe(204);
    const rest = await drainFor(a, 3_000);
    expect(aTimes.length + rest.length).toBe(2_000);
    expect(await setDispatchRate(namespace, { dispatchThrottlingRateInMsg: 5, ratePeriodInSecond: 10 })).toBe(400);
    await Promise.all([a.close(), b.close(), free.close(), producer.close(), freeProducer.close()]);
  }, 60_000);
});
