// The namespace's delayed delivery policy (issue 17, part of item 4; Pulsar's delayed_delivery_policies),
// against a real standalone: a delay over maxDeliveryDelayMs is refused at send with NotAllowedError
// (the producer goes on), one within it is held until its time, and with delayed delivery off a
// deliverAfter is ignored; set at run time over REST and the CLI's gRPC path.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StandaloneProcess } from '@strata/runtime/testing';
import Pulsar, { type Client } from '@strata/client';
import { AdminApi, parseServiceUrl } from '@strata/client/admin';

let standalone: StandaloneProcess;
let client: Client;
let admin: AdminApi;
const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  standalone = await StandaloneProcess.start();
  client = new Pulsar.Client({ serviceUrl: standalone.serviceUrl, operationTimeoutSeconds: 10 });
  admin = new AdminApi(parseServiceUrl(standalone.serviceUrl));
}, 90_000);

afterAll(async () => {
  admin?.close();
  await client?.close();
  await standalone?.stop();
});

const policy = (namespace: string, body?: unknown) => fetch(`${standalone.webServiceUrl}/admin/v2/namespaces/${namespace}/delayedDelivery`, {
  method: body === undefined ? 'GET' : 'POST',
  ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
});

describe('delayed delivery policy', () => {
  it('refuses a delay over the maximum, holds one within it, and ignores delays when switched off', async () => {
    const namespace = `public/${unique('delayed')}`;
    await admin.createNamespace(namespace);
    expect(await (await policy(namespace)).json()).toEqual({ active: true, tickTime: 1000, maxDeliveryDelayInMillis: 0 });
    expect((await policy(namespace, { active: true, maxDeliveryDelayInMillis: 2_000 })).status).toBe(204);
    const topic = `persistent://${namespace}/t`;
    const consumer = await client.subscribe({ topic, subscription: 's', subscriptionType: 'Shared' });
    const producer = await client.createProducer({ topic, batchingEnabled: false });

    await expect(producer.send({ data: Buffer.from('too late'), deliverAfter: 60_000 })).rejects.toMatchObject({ code: 'NOT_ALLOWED', message: expect.stringMatching(/maxDeliveryDelayMs/) });
    const t0 = Date.now();
    await producer.send({ data: Buffer.from('in a moment'), deliverAfter: 800 });
    const held = await consumer.receive(10_000);
    expect(held.getData().toString()).toBe('in a moment');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
    await consumer.acknowledge(held);

    // Off (over the gRPC path the CLI uses): a deliverAfter is ignored, and no maximum applies.
    await admin.setPolicies(namespace, { ...(await admin.getPolicies(namespace)), delayedDeliveryDisabled: true, maxDeliveryDelayMs: 0 });
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
