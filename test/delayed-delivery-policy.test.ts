// The namespace's delayed delivery policy (issue 17, part of item 4; Pulsar's delayed_delivery_policies),
// against a real standalone: a delay over maxDeliveryDelayMs is refused at send with NotAllowedError
// (the producer goes on), one within it is held until its time, and with delayed delivery off a
// deliverAfter is ignored; set at run time over REST and the CLI's gRPC path.
import { describe, expect, it } from 'vitest';
import { unique, useStandalone } from './harness/standalone.js';

const env = useStandalone();

const policy = (namespace: string, body?: unknown) => fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/delayedDelivery`, {
  method: body === undefined ? 'GET' : 'POST',
  ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
});

describe('delayed delivery policy', () => {
  it('refuses a delay over the maximum, holds one within it, and ignores delays when switched off', async () => {
    const namespace = `public/${unique('delayed')}`;
    await env.admin.createNamespace(namespace);
    expect(await (await policy(namespace)).json()).toEqual({ active: true, tickTime: 1000, maxDeliveryDelayInMillis: 0 });
    expect((await policy(namespace, { active: true, maxDeliveryDelayInMillis: 2_000 })).status).toBe(204);
    const topic = `persistent://${namespace}/t`;
    const consumer = await env.client.subscribe({ topic, subscription: 's', subscriptionType: 'Shared' });
    const producer = await env.client.createProducer({ topic, batchingEnabled: false });

    await expect(producer.send({ data: Buffer.from('too late'), deliverAfter: 60_000 })).rejects.toMatchObject({ code: 'NOT_ALLOWED', message: expect.stringMatching(/maxDeliveryDelayMs/) });
    const t0 = Date.now();
    await producer.send({ data: Buffer.from('in a moment'), deliverAfter: 800 });
    const held = await consumer.receive(10_000);
    expect(held.getData().toString()).toBe('in a moment');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    await consumer.acknowledge(held);

    // Off (over the gRPC path the CLI uses): a deliverAfter is ignored, and no maximum applies.
    await env.admin.setPolicies(namespace, { ...(await env.admin.getPolicies(namespace)), delayedDeliveryDisabled: true, maxDeliveryDelayMs: 0 });
    expect(await (await policy(namespace)).json()).toMatchObject({ active: false });
    const t1 = Date.now();
    await producer.send({ data: Buffer.from('now'), deliverAfter: 30_000 });
    const now = await consumer.receive(5_000);
    expect(now.getData().toString()).toBe('now');
    expect(Date.now() - t1).toBeLessThan(5_000);
    expect((await policy(namespace, { maxDeliveryDelayInMillis: 5 })).status).toBe(400);
    await Promise.all([consumer.close(), producer.close()]);
  }, 60_000);
});
