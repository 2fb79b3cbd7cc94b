import { describe, expect, it } from 'vitest';
import { compileProducerConfig, PartitionProducer, type ProducerConfig } from '../src/producer.js';
import { decodeMessageBatch } from '../src/protocol.js';
import { decompress } from '../src/compression.js';
import { FakeBroker, until, type FakeStream } from '../src/testing/index.js';

async function open(broker: FakeBroker, config: Partial<ProducerConfig> = {}): Promise<PartitionProducer> {
  const cfg = compileProducerConfig({ topic: 'unit-topic', ...config });
  const p = new PartitionProducer(broker.ctx, cfg, cfg.topic, -1);
  await p.start();
  return p;
}

function sends(s: FakeStream) {
  return s.commands('send') as { metadata: { sequenceId: number; highestSequenceId: number; numMessages: number; compression: string; uncompressedSize: number; producerName: string; batchKey: string }; batch: Buffer }[];
}

function receipt(s: FakeStream, seq: number, entryId: number) {
  s.answer({ receipt: { sequenceId: seq, highestSequenceId: seq, messageId: { ledgerId: 3, entryId, batchIndex: -1, partition: -1 } } });
}

describe('PartitionProducer', () => {
  it('opens with the broker-assigned name and continues the sequence after last_sequence_id', async () => {
    const broker = new FakeBroker();
    broker.lastSequenceId = 41;
    const p = await open(broker, { batchingEnabled: false });
    expect(p.name).toBe('fake-producer');
    const sent = p.send({ data: Buffer.from('x') });
    await until(() => sends(broker.producer).length === 1);
    expect(sends(broker.producer)[0]!.metadata.sequenceId).toBe(42);
    receipt(broker.producer, 42, 7);
    const id = await sent;
    expect(id.toString()).toBe('(3,7,-1,-1)');
    await p.close();
  });

  it('batches up to batchingMaxMessages into one compressed MessageBatch and ids carry batch indexes', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingMaxMessages: 3, batchingMaxPublishDelayMs: 10_000, compressionType: 'ZSTD' });
    const results = [0, 1, 2, 3, 4].map((i) => p.send({ data: Buffer.from(`m${i}`), partitionKey: 'k' }));
    await until(() => sends(broker.producer).length === 1);
    const [first] = sends(broker.producer);
    expect(first!.metadata).toMatchObject({ sequenceId: 0, highestSequenceId: 2, numMessages: 3, compression: 'ZSTD', batchKey: 'k' });
    const messages = decodeMessageBatch(decompress('ZSTD', Buffer.from(first!.batch), first!.metadata.uncompressedSize));
    expect(messages.map((m) => Buffer.from(m.payload).toString())).toEqual(['m0', 'm1', 'm2']);
    expect(messages.map((m) => m.sequenceId)).toEqual([0, 1, 2]);
    // The last two wait for the delay or a flush.
    expect(sends(broker.producer)).toHaveLength(1);
    const flushed = p.flush();
    await until(() => sends(broker.producer).length === 2);
    receipt(broker.producer, 0, 1);
    receipt(broker.producer, 3, 2);
    await flushed;
    const ids = await Promise.all(results);
    expect(ids.map((id) => id.toString())).toEqual(['(3,1,-1,0)', '(3,1,-1,1)', '(3,1,-1,2)', '(3,2,-1,0)', '(3,2,-1,1)']);
    await p.close();
  });

  it('KeyBasedBatching makes one batch per key, each with a contiguous range of sequence ids', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingType: 'KeyBasedBatching', batchingMaxPublishDelayMs: 10_000 });
    const results = ['a', 'b', 'a', 'c', 'b', 'a'].map((k, i) => p.send({ data: Buffer.from(`${k}${i}`), partitionKey: k }));
    const flushed = p.flush();
    await until(() => sends(broker.producer).length === 3);
    const batches = sends(broker.producer).map((b) => ({
      key: b.metadata.batchKey, first: b.metadata.sequenceId, last: b.metadata.highestSequenceId,
      data: decodeMessageBatch(b.batch).map((m) => Buffer.from(m.payload).toString()),
    }));
    expect(batches).toEqual([
      { key: 'a', first: 0, last: 2, data: ['a0', 'a2', 'a5'] },
      { key: 'b', first: 3, last: 4, data: ['b1', 'b4'] },
      { key: 'c', first: 5, last: 5, data: ['c3'] },
    ]);
    receipt(broker.producer, 0, 0);
    receipt(broker.producer, 3, 1);
    receipt(broker.producer, 5, 2);
    await flushed;
    expect((await Promise.all(results)).map((id) => id.toString())).toEqual(['(3,0,-1,0)', '(3,1,-1,0)', '(3,0,-1,1)', '(3,2,-1,-1)', '(3,1,-1,1)', '(3,0,-1,2)']);
    await p.close();
  });

  it('sends a batch when its size limit is reached, and after batchingMaxPublishDelayMs', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingMaxAllowedSizeInBytes: 1000, batchingMaxPublishDelayMs: 20 });
    const a = p.send({ data: Buffer.alloc(600) });
    const b = p.send({ data: Buffer.alloc(600) }); // would overflow: the first goes alone
    await until(() => sends(broker.producer).length === 1);
    expect(sends(broker.producer)[0]!.metadata.numMessages).toBe(1);
    await until(() => sends(broker.producer).length === 2, 1000);
    receipt(broker.producer, 0, 0);
    receipt(broker.producer, 1, 1);
    await Promise.all([a, b]);
    await p.close();
  });

  it('rejects malformed messages with InvalidArgument before queueing them', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false });
    const bad: unknown[] = [
      { data: 'not a buffer' }, { data: Buffer.from('x'), colour: 'red' }, { data: Buffer.from('x'), sequenceId: -1 },
      { data: Buffer.from('x'), eventTimestamp: 1.5 }, { data: Buffer.from('x'), deliverAfter: '10' },
      { data: Buffer.from('x'), partitionKey: 7 }, { data: Buffer.from('x'), replicationClusters: [1] },
    ];
    for (const m of bad) {
      await expect(p.send(m as Parameters<PartitionProducer['send']>[0])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    // A well-formed one still goes out, with its fields on the wire.
    const sent = p.send({ data: Buffer.from('ok'), sequenceId: 5, eventTimestamp: 2 ** 40, partitionKey: 'k', properties: { a: 'b' } });
    await until(() => sends(broker.producer).length === 1);
    const [wire] = decodeMessageBatch(sends(broker.producer)[0]!.batch);
    expect(wire).toMatchObject({ sequenceId: 5, eventTime: 2 ** 40, partitionKey: 'k', properties: { a: 'b' } });
    receipt(broker.producer, 5, 1);
    await sent;
    await p.close();
  });

  it('rejects with ProducerQueueIsFull at maxPendingMessages unless blockIfQueueFull', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false, maxPendingMessages: 2 });
    const a = p.send({ data: Buffer.from('a') });
    const b = p.send({ data: Buffer.from('b') });
    await expect(p.send({ data: Buffer.from('c') })).rejects.toThrow('Failed to send message: ProducerQueueIsFull');
    await until(() => sends(broker.producer).length === 2);
    receipt(broker.producer, 0, 0);
    receipt(broker.producer, 1, 1);
    await Promise.all([a, b]);
    await p.close();
  });

  it('blocks at maxPendingMessages with blockIfQueueFull, and an AbortSignal ends the wait', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false, maxPendingMessages: 1, blockIfQueueFull: true });
    const a = p.send({ data: Buffer.from('a') });
    const ac = new AbortController();
    const aborted = p.send({ data: Buffer.from('x') }, { signal: ac.signal });
    const b = p.send({ data: Buffer.from('b') });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    await until(() => sends(broker.producer).length === 1);
    receipt(broker.producer, 0, 0);
    await a;
    await until(() => sends(broker.producer).length === 2);
    expect(sends(broker.producer)[1]!.metadata.sequenceId).toBe(1);
    receipt(broker.producer, 1, 1);
    await b;
    await p.close();
  });

  it('fails messages not acknowledged within sendTimeoutMs with TimeOut', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false, sendTimeoutMs: 50 });
    await expect(p.send({ data: Buffer.from('a') })).rejects.toThrow('Failed to send message: TimeOut');
    await p.close();
  });

  it('after a disconnect, resends every unacknowledged batch in order on a new stream', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false });
    const first = broker.producer;
    const results = [0, 1, 2, 3].map((i) => p.send({ data: Buffer.from(`m${i}`) }));
    await until(() => sends(first).length === 4);
    receipt(first, 0, 0);
    await results[0];
    first.emit('error', Object.assign(new Error('gone'), { code: 14 }));
    expect(p.isConnected()).toBe(false);
    await until(() => broker.produceStreams.length === 2 && p.isConnected());
    const second = broker.producer;
    expect(second.commands('open')[0]).toMatchObject({ producerName: 'fake-producer' });
    // Meanwhile-sent messages queue behind the resent ones.
    const late = p.send({ data: Buffer.from('m4') });
    await until(() => sends(second).length === 4);
    expect(sends(second).map((s) => s.metadata.sequenceId)).toEqual([1, 2, 3, 4]);
    [1, 2, 3, 4].forEach((seq, i) => receipt(second, seq, 10 + i));
    const ids = await Promise.all([...results.slice(1), late]);
    expect(ids.map((id) => id.entryId)).toEqual([10, 11, 12, 13]);
    await p.close();
  });

  it('a Closed event with a redirect reconnects there without waiting', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false });
    broker.producer.answer({ closed: { reason: 'bundle unloaded', redirectBrokerUrl: 'other:2' } });
    await until(() => broker.produceStreams.length === 2 && p.isConnected());
    expect(broker.lookups).toBe(1); // no second lookup: the redirect named the broker
    await p.close();
  });

  it('a batch-level SendError fails that batch only', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingEnabled: false });
    const a = p.send({ data: Buffer.from('a') });
    const b = p.send({ data: Buffer.from('b') });
    await until(() => sends(broker.producer).length === 2);
    broker.producer.answer({ sendError: { sequenceId: 0, errorCode: 'TOO_LARGE', message: 'too big' } });
    receipt(broker.producer, 1, 5);
    await expect(a).rejects.toMatchObject({ code: 'TOO_LARGE', message: expect.stringContaining('Failed to send message: MessageTooBig') });
    expect((await b).entryId).toBe(5);
    await p.close();
  });

  it('close() sends what is batched, waits for the broker, and fails later sends with AlreadyClosed', async () => {
    const broker = new FakeBroker();
    const p = await open(broker, { batchingMaxPublishDelayMs: 60_000 });
    const pending = p.send({ data: Buffer.from('batched') });
    broker.autoOpen = true;
    const closing = p.close();
    await until(() => sends(broker.producer).length === 1);
    receipt(broker.producer, 0, 9);
    expect((await pending).entryId).toBe(9);
    await closing;
    expect(broker.producer.commands('close')).toHaveLength(1);
    await expect(p.send({ data: Buffer.from('x') })).rejects.toThrow('Failed to send message: AlreadyClosed');
  });

  it('close() during reconnection ends the loop at once and fails what is pending', async () => {
    const broker = new FakeBroker();
    broker.ctx = { ...broker.ctx, maxBackoffMs: 60_000, initialBackoffMs: 60_000 } as typeof broker.ctx;
    const p = await open(broker, { batchingEnabled: false });
    const pending = p.send({ data: Buffer.from('a') });
    await until(() => sends(broker.producer).length === 1);
    broker.producer.emit('end');
    expect(p.isConnected()).toBe(false);
    const started = Date.now();
    await p.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(pending).rejects.toThrow('Failed to send message: AlreadyClosed');
    expect(broker.produceStreams).toHaveLength(1);
  });
});
