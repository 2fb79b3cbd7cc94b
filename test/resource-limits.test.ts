// Resource limits per namespace (issue 16, part of item 4; Pulsar's maxProducersPerTopic,
// maxConsumersPerSubscription, maxSubscriptionsPerTopic), against a real standalone: past a limit the
// next producer, consumer or subscription is refused with a typed error naming the limit, what is
// already attached keeps working, and the limits are set and lifted at run time over REST.
import { describe, expect, it } from 'vitest';
import { unique, useStandalone } from './harness/standalone.js';

const env = useStandalone();

const limit = (namespace: string, name: string, value?: number) => fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/${name}`, {
  method: value === undefined ? 'DELETE' : 'POST',
  ...(value === undefined ? {} : { body: JSON.stringify(value), headers: { 'content-type': 'application/json' } }),
}).then((r) => r.status);

describe('namespace resource limits', () => {
  it('refuse the producer, consumer or subscription past the limit, with its name; existing ones go on', async () => {
    const namespace = `public/${unique('limits')}`;
    expect((await fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}`, { method: 'PUT' })).status).toBe(204);
    expect(await limit(namespace, 'maxProducersPerTopic', 2)).toBe(204);
    expect(await limit(namespace, 'maxConsumersPerSubscription', 1)).toBe(204);
    expect(await limit(namespace, 'maxSubscriptionsPerTopic', 2)).toBe(204);
    expect(await (await fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/maxProducersPerTopic`)).json()).toBe(2);
    const topic = `persistent://${namespace}/t`;

    const producers = [await env.client.createProducer({ topic }), await env.client.createProducer({ topic })];
    await expect(env.client.createProducer({ topic })).rejects.toMatchObject({ code: 'PRODUCER_BUSY', message: expect.stringMatching(/ProducerBusy.*maxProducersPerTopic/) });

    const shared = await env.client.subscribe({ topic, subscription: 's1', subscriptionType: 'Shared' });
    await expect(env.client.subscribe({ topic, subscription: 's1', subscriptionType: 'Shared' })).rejects.toMatchObject({ code: 'CONSUMER_BUSY', message: expect.stringMatching(/maxConsumersPerSubscription/) });
    const second = await env.client.subscribe({ topic, subscription: 's2' });
    await expect(env.client.subscribe({ topic, subscription: 's3' })).rejects.toMatchObject({ code: 'NOT_ALLOWED', retriable: false, message: expect.stringMatching(/NotAllowedError.*maxSubscriptionsPerTopic/) });

    // What is attached keeps working.
    await producers[0]!.send({ data: Buffer.from('still here') });
    expect((await shared.receive(5000)).getData().toString()).toBe('still here');

    // Lifted at run time: the next ones come in.
    for (const name of ['maxProducersPerTopic', 'maxConsumersPerSubscription', 'maxSubscriptionsPerTopic']) expect(await limit(namespace, name)).toBe(204);
    const third = await env.client.createProducer({ topic });
    const again = await env.client.subscribe({ topic, subscription: 's1', subscriptionType: 'Shared' });
    const s3 = await env.client.subscribe({ topic, subscription: 's3' });
    expect((await fetch(`${env.standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/maxSubscriptionsPerTopic`, { method: 'POST', body: '"x"', headers: { 'content-type': 'application/json' } })).status).toBe(400);
    await Promise.all([...producers, third, shared, second, again, s3].map((x) => x.close()));
  }, 60_000);
});
