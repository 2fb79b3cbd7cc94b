import { afterEach, describe, expect, it } from 'vitest';
import { compress } from '../src/compression.js';
import { Consumer, type ConsumerConfig, type ConsumerHost } from '../src/consumer/consumer.js';
import type { Message } from '../src/message.js';
import type { Producer, ProducerConfig } from '../src/producer.js';
import { encodeMessageBatch } from '../src/protocol.js';
import { FakeBroker, until, type FakeStream } from '../src/testing/index.js';

const open: Consumer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

interface DlqRecord { topic: string; data: string; properties: Record<string, string> }

async function subscribe(broker: FakeBroker, config: Partial<ConsumerConfig> = {}, dlq: DlqRecord[] = []): Promise<Consumer> {
  const host: ConsumerHost = {
    partitions: async () => broker.partitions,
    listTopics: async () => [],
    subscribe: async () => { throw new Error('not in this test'); },
    createProducer: async (cfg: ProducerConfig) => ({
      send: async (m: { data: Buffer; properties?: Record<string, string> }) => {
        dlq.push({ topic: cfg.topic, data: m.data.toString(), properties: m.properties ?? {} });
        return undefined;
      },
      close: async () => null,
    }) as unknown as Producer,
  };
  const c = await Consumer.create(broker.ctx, { topic: 'unit-topic', subscription: 'sub', ...config }, host, () => {});
  open.push(c);
  return c;
}

let entryCounter = 0;
function deliver(s: FakeStream, payloads: string[], opts: { redeliveryCount?: number; entryId?: number; compression?: 'NONE' | 'LZ4' } = {}): number {
  const entryId = opts.entryId ?? entryCounter++;
  const raw = encodeMessageBatch(payloads.map((p, i) => ({ payload: Buffer.from(p), sequenceId: i, properties: { i: String(i) } })));
  const compression = opts.compression ?? 'NONE';
  s.answer({
    delivery: {
      entries: [{
        messageId: { ledgerId: 5, entryId, batchIndex: -1, partition: -1 },
        redeliveryCount: opts.redeliveryCount ?? 0,
        envelope: {
          metadata: { producerName: 'p', sequenceId: 0, highestSequenceId: payloads.length - 1, numMessages: payloads.length, compression, uncompressedSize: raw.length, publishTime: 1234, replicatedFrom: '' },
          batch: compress(compression, raw),
        },
      }],
    },
  });
  return entryId;
}

function acks(s: FakeStream) {
  return s.commands('ack') as { messageIds: { ledgerId: number; entryId: number; batchIndex: number }[]; cumulative: boolean }[];
}

describe('Consumer', () => {
  it('subscribes with the options mapped to the wire and grants receiverQueueSize permits (entries)', async () => {
    const broker = new FakeBroker();
    await subscribe(broker, { subscriptionType: 'KeyShared', subscriptionInitialPosition: 'Earliest', receiverQueueSize: 10, keySharedPolicy: { keyShareMode: 'Sticky', stickyRanges: [{ start: 0, end: 100 }] }, nAckRedeliverTimeoutMs: 500 });
    const sub = broker.consumer.commands('subscribe')[0]!;
    expect(sub).toMatchObject({ topic: 'persistent://public/default/unit-topic', subscription: 'sub', type: 'KEY_SHARED_SUB', initialPosition: 'EARLIEST', durable: true, negativeAckRedeliveryDelayMs: 500 });
    expect(sub.keySharedPolicy).toMatchObject({ mode: 'STICKY', ranges: [{ start: 0, end: 100 }] });
    expect(broker.consumer.commands('flow')).toEqual([{ permits: 10 }]);
  });

  it('unpacks a compressed batch into messages with batch indexes and getters', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    deliver(broker.consumer, ['a', 'b', 'c'], { compression: 'LZ4', entryId: 100 });
    const got = [await c.receive(), await c.receive(), await c.receive()];
    expect(got.map((m) => m.getData().toString())).toEqual(['a', 'b', 'c']);
    expect(got.map((m) => m.getMessageId().toString())).toEqual(['(5,100,-1,0)', '(5,100,-1,1)', '(5,100,-1,2)']);
    expect(got[1]!.getProperties()).toEqual({ i: '1' });
    expect(got[1]!.getPublishTimestamp()).toBe(1234);
    expect(got[1]!.getProducerName()).toBe('p');
    expect(got[1]!.getTopicName()).toBe('persistent://public/default/unit-topic');
    expect(got[1]!.getRedeliveryCount()).toBe(0);
    expect(got[1]!.isReplicated()).toBe(false);
  });

  it('acknowledges an entry to the broker only when all its messages are acknowledged', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    deliver(broker.consumer, ['a', 'b'], { entryId: 7 });
    deliver(broker.consumer, ['solo'], { entryId: 8 });
    const [a, b, solo] = [await c.receive(), await c.receive(), await c.receive()];
    await c.acknowledge(a!);
    await new Promise((r) => setTimeout(r, 10));
    expect(acks(broker.consumer)).toHaveLength(0);
    await c.acknowledge(b!);
    await c.acknowledgeId(solo!.getMessageId());
    const ids = acks(broker.consumer).flatMap((x) => x.messageIds.map((id) => `${id.ledgerId}:${id.entryId}:${id.batchIndex}`));
    expect(ids).toEqual(['5:7:-1', '5:8:-1']);
  });

  it('receive(timeout) rejects with pulsar-client\'s message; an AbortSignal aborts', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    await expect(c.receive(30)).rejects.toThrow('Failed to receive message: TimeOut');
    const ac = new AbortController();
    const p = c.receive(undefined, { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('gives permits back once half the queue was consumed', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker, { receiverQueueSize: 4 });
    for (let i = 0; i < 4; i++) deliver(broker.consumer, [`m${i}`, `n${i}`]);
    for (let i = 0; i < 3; i++) await c.receive();
    expect(broker.consumer.commands('flow')).toEqual([{ permits: 4 }]);
    await c.receive(); // the second entry is now fully out of the queue: 2 entries consumed = half
    expect(broker.consumer.commands('flow')).toEqual([{ permits: 4 }, { permits: 2 }]);
  });

  it('cumulative acks are refused on Shared subscriptions', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker, { subscriptionType: 'Shared' });
    deliver(broker.consumer, ['a']);
    const m = await c.receive();
    await expect(c.acknowledgeCumulative(m)).rejects.toThrow(/CumulativeAcknowledgementNotAllowedError/);
  });

  it('cumulative ack in the middle of a batch acks the entries before it', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker, { subscriptionType: 'Failover' });
    deliver(broker.consumer, ['x'], { entryId: 20 });
    deliver(broker.consumer, ['a', 'b', 'c'], { entryId: 21 });
    await c.receive();
    await c.receive();
    const b = await c.receive();
    await c.acknowledgeCumulative(b);
    expect(acks(broker.consumer)).toEqual([expect.objectContaining({ cumulative: true, messageIds: [expect.objectContaining({ ledgerId: 5, entryId: 20 })] })]);
  });

  it('negative acks name the entry; nothing is acked', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    deliver(broker.consumer, ['a', 'b'], { entryId: 30 });
    const m = await c.receive();
    c.negativeAcknowledge(m);
    expect(broker.consumer.commands('nack')).toEqual([{ messageIds: [{ ledgerId: 5, entryId: 30, batchIndex: -1, partition: -1 }] }]);
  });

  it('sends an entry past maxRedeliverCount to the dead-letter topic and acks it, without delivering it', async () => {
    const broker = new FakeBroker();
    const dlq: DlqRecord[] = [];
    const c = await subscribe(broker, { deadLetterPolicy: { maxRedeliverCount: 2 } }, dlq);
    deliver(broker.consumer, ['poison'], { entryId: 40, redeliveryCount: 2 });
    expect((await c.receive()).getRedeliveryCount()).toBe(2);
    deliver(broker.consumer, ['poison'], { entryId: 40, redeliveryCount: 3 });
    await until(() => acks(broker.consumer).length === 1);
    expect(dlq).toEqual([{ topic: 'persistent://public/default/unit-topic-sub-DLQ', data: 'poison', properties: expect.objectContaining({ REAL_TOPIC: 'persistent://public/default/unit-topic', ORIGIN_MESSAGE_ID: '(5,40,-1,-1)' }) }]);
    expect(acks(broker.consumer)[0]!.messageIds[0]).toMatchObject({ entryId: 40 });
    await expect(c.receive(50)).rejects.toThrow(/TimeOut/);
  });

  it('after a reconnect, drops buffered messages (they are redelivered) and re-sends unconfirmed acks', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    deliver(broker.consumer, ['a'], { entryId: 50 });
    deliver(broker.consumer, ['b'], { entryId: 51 });
    const a = await c.receive();
    const first = broker.consumer;
    first.emit('error', Object.assign(new Error('gone'), { code: 14 }));
    expect(c.isConnected()).toBe(false);
    const acked = c.acknowledge(a);
    await until(() => broker.consumeStreams.length === 2 && c.isConnected());
    await acked;
    expect(acks(broker.consumer)[0]!.messageIds[0]).toMatchObject({ entryId: 50 });
    await expect(c.receive(30)).rejects.toThrow(/TimeOut/); // 'b' was dropped; the broker sends it again
    deliver(broker.consumer, ['b'], { entryId: 51, redeliveryCount: 1 });
    expect((await c.receive()).getData().toString()).toBe('b');
  });

  it('batchReceive returns up to maxNumMessages, or what arrived by timeoutMs', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker, { batchReceivePolicy: { maxNumMessages: 3, timeoutMs: 50 } });
    deliver(broker.consumer, ['1', '2', '3', '4']);
    expect((await c.batchReceive()).map((m) => m.getData().toString())).toEqual(['1', '2', '3']);
    expect((await c.batchReceive()).map((m) => m.getData().toString())).toEqual(['4']);
    expect(await c.batchReceive()).toEqual([]);
  });

  it('a listener gets every message; receive() is refused', async () => {
    const broker = new FakeBroker();
    const got: string[] = [];
    const c = await subscribe(broker, { listener: (m: Message) => { got.push(m.getData().toString()); } });
    deliver(broker.consumer, ['a', 'b']);
    await until(() => got.length === 2);
    expect(got).toEqual(['a', 'b']);
    await expect(c.receive()).rejects.toThrow(/listener/);
  });

  it('for await iterates until close', async () => {
    const broker = new FakeBroker();
    const c = await subscribe(broker);
    deliver(broker.consumer, ['a', 'b', 'c']);
    const got: string[] = [];
    for await (const m of c) {
      got.push(m.getData().toString());
      if (got.length === 3) void c.close();
    }
    expect(got).toEqual(['a', 'b', 'c']);
  });

  it('ackTimeoutMs asks for redelivery of what was not acked in time', async () => {
    const broker = new FakeBroker();
    let now = 1_000_000;
    broker.ctx.clock.now = () => now;
    const c = await subscribe(broker, { ackTimeoutMs: 10_000 });
    deliver(broker.consumer, ['late'], { entryId: 60 });
    deliver(broker.consumer, ['acked'], { entryId: 61 });
    await c.receive();
    await c.acknowledge(await c.receive());
    now += 10_001;
    await until(() => broker.consumer.commands('redeliver').length === 1, 3000);
    expect(broker.consumer.commands('redeliver')[0]).toEqual({ messageIds: [{ ledgerId: 5, entryId: 60, batchIndex: -1, partition: -1 }] });
  });
});
