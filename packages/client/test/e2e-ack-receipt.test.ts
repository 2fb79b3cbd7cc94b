// ackReceiptEnabled against an in-process broker whose cursor flush interval is a minute: an ack
// promise resolves only once the cursor record in the metadata store covers it (decision 0091; for a
// batch, the ack that completes the entry); without receipts the record lags.
import { startTestBroker, type TestBroker } from '@strata/broker/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, type Message } from '../src/index.js';
import { unique } from './e2e-helpers.js';

let broker: TestBroker;
let client: Client;

beforeAll(async () => {
  broker = await startTestBroker({ config: { cursorFlushIntervalMs: 60_000 } });
  client = new Client({ serviceUrl: `pulsar://${broker.address}`, operationTimeoutSeconds: 10 });
});

afterAll(async () => {
  await client?.close();
  await broker?.stop();
});

/** The persisted cursor: mark-delete entry id and individually acked ranges (ledger, from, to). */
async function persisted(topic: string, sub: string): Promise<{ markDelete: [number, number]; ranges: Array<[number, number, number]> } | undefined> {
  const kv = await broker.metadata.get(`managed-ledgers/public/default/persistent/${topic}/cursors/${sub}`);
  return kv ? JSON.parse(kv.value.toString('utf8')) as { markDelete: [number, number]; ranges: Array<[number, number, number]> } : undefined;
}

function covers(c: Awaited<ReturnType<typeof persisted>>, m: Message): boolean {
  if (!c) return false;
  const { ledgerId, entryId } = m.getMessageId();
  const [mdL, mdE] = c.markDelete;
  if (ledgerId < mdL || (ledgerId === mdL && entryId <= mdE)) return true;
  return c.ranges.some(([l, from, to]) => l === ledgerId && from <= entryId && entryId <= to);
}

async function sendBatches(topic: string): Promise<void> {
  const producer = await client.createProducer({ topic, batchingMaxMessages: 5, batchingMaxPublishDelayMs: 50 });
  await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send({ data: Buffer.from(`m${i}`) })));
  await producer.close();
}

describe('ackReceiptEnabled', () => {
  it('the ack that completes an entry resolves once the persisted cursor covers it; an await-each loop over batches goes on', async () => {
    const topic = unique('receipt');
    const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionInitialPosition: 'Earliest', ackReceiptEnabled: true });
    await sendBatches(topic);
    const got: Message[] = [];
    for (let i = 0; i < 20; i++) got.push(await consumer.receive(5_000));
    expect(new Set(got.map((m) => m.getMessageId().entryId)).size).toBeLessThan(20); // batched
    // The usual loop: await each ack. A message that completes its entry (the last of its batch, or
    // one sent alone) is in the persisted record once its ack resolved.
    for (const m of got) {
      await consumer.acknowledge(m);
      const id = m.getMessageId();
      if (id.batchIndex < 0 || id.batchIndex === id.batchSize - 1) {
        expect(covers(await persisted(topic, 'sub'), m), `ack of ${m.getData().toString()} persisted`).toBe(true);
      }
    }
    await consumer.close();
  });

  it('without receipts an ack resolves before the cursor is persisted (the flush interval is the window)', async () => {
    const topic = unique('plain');
    const consumer = await client.subscribe({ topic, subscription: 'plain', subscriptionInitialPosition: 'Earliest' });
    await sendBatches(topic);
    const got: Message[] = [];
    for (let i = 0; i < 20; i++) got.push(await consumer.receive(5_000));
    await Promise.all(got.map((m) => consumer.acknowledge(m)));
    expect(covers(await persisted(topic, 'plain'), got.at(-1)!)).toBe(false);
    await consumer.close();
  });

  it('rejects a non-boolean ackReceiptEnabled', async () => {
    await expect(client.subscribe({ topic: unique('bad'), subscription: 's', ackReceiptEnabled: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'INVALID_CONFIGURATION' });
  });
});
