// Messages at and over the broker's size limit, against a real `strata standalone` (issue 14: a 6 MiB
// message used to time out after the whole send timeout while the broker reopened the producer ~10 times
// a second).
import { describe, expect, it } from 'vitest';
import { ClientErrorCode } from '../src/index.js';
import { unique, useStandalone } from './e2e-helpers.js';

const MiB = 1024 * 1024;
const env = useStandalone();

describe('message size limit', () => {
  it.each([
    ['batching off', false, 6 * MiB],
    ['batching off, just over the limit', false, 5 * MiB + 1],
    ['batching on', true, 7 * MiB],
  ])('fails a message over the broker\'s limit at once with MessageTooBig (%s)', async (_name, batchingEnabled, size) => {
    const topic = unique('too-big');
    const producer = await env.client.createProducer({ topic, batchingEnabled, sendTimeoutMs: 30_000 });
    const started = Date.now();
    const err = await producer.send({ data: Buffer.alloc(size, 1) }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((err as { code?: string }).code).toBe(ClientErrorCode.TOO_LARGE);
    expect(String(err)).toContain('MessageTooBig');
    if (!batchingEnabled) expect(String(err)).not.toMatch(/batch/i);
    // The producer stays usable: no reconnect loop, the next message goes through.
    expect(producer.isConnected()).toBe(true);
    await producer.send({ data: Buffer.from('small') });
    await producer.close();
  });

  it('delivers a message just under the limit, and batches never grow past it', async () => {
    const topic = unique('at-limit');
    const consumer = await env.client.subscribe({ topic, subscription: 's', subscriptionInitialPosition: 'Earliest' });
    const big = await env.client.createProducer({ topic, batchingEnabled: false });
    await big.send({ data: Buffer.alloc(5 * MiB - 4096, 2) });
    // Batching allowed up to 32 MiB: each batch must still fit the broker's 5 MiB.
    const batched = await env.client.createProducer({ topic, batchingMaxAllowedSizeInBytes: 32 * MiB, batchingMaxMessages: 1000, batchingMaxPublishDelayMs: 100 });
    await Promise.all(Array.from({ length: 12 }, () => batched.send({ data: Buffer.alloc(MiB, 3) })));
    const first = await consumer.receive(10_000);
    expect(first.getData().length).toBe(5 * MiB - 4096);
    for (let i = 0; i < 12; i++) expect((await consumer.receive(10_000)).getData().length).toBe(MiB);
    await Promise.all([big.close(), batched.close(), consumer.close()]);
  });
});
