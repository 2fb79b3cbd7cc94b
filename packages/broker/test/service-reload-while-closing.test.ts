// Regression test for docs/robustness.md "publishing stalled after an etcd container was killed": a
// topic requested again while its previous instance is still closing (ownership lost and regained
// within a second, its cursor flush waiting on a slow metadata write) got the same managed ledger,
// which the old instance's close then closed under it: every publish failed with
// ManagedLedgerClosedError, and producers reconnected in a loop, until the topic was unloaded again.
import { EmbeddedMetadataStore, type MetadataStore } from '@strata/coordinator';
import { silentLogger, sleep } from '@strata/runtime';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TopicName } from '../src/names.js';
import { startTestBroker, type TestBroker } from '../src/testing/index.js';
import type { BrokerClient } from '../src/generated/strata/broker/v1/Broker.js';
import { brokerClient, TestConsumer, TestProducer, uniqueTopic } from './helpers.js';

/** The store with every put delayed by `slowPutMs` while it is > 0 (an etcd write waiting on a dead member). */
function slowPuts(store: MetadataStore): { store: MetadataStore; set(ms: number): void } {
  let slowPutMs = 0;
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'put') {
        return async (...args: Parameters<MetadataStore['put']>) => {
          if (slowPutMs > 0) await sleep(slowPutMs);
          return target.put(...args);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: proxy, set: (ms) => (slowPutMs = ms) };
}

describe('broker service: a topic requested again while its previous instance is closing', () => {
  let dir: string;
  let embedded: EmbeddedMetadataStore;
  let slow: ReturnType<typeof slowPuts>;
  let tb: TestBroker;
  let client: BrokerClient;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'strata-reload-'));
    embedded = await EmbeddedMetadataStore.open({ dir, logger: silentLogger() });
    slow = slowPuts(embedded);
    tb = await startTestBroker({ metadata: slow.store, config: { cursorFlushIntervalMs: 60_000 } });
    client = brokerClient(tb.address);
  }, 30_000);

  afterAll(async () => {
    slow?.set(0);
    client?.close();
    await tb?.stop();
    await embedded?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the new instance gets a managed ledger of its own and takes publishes', async () => {
    const topic = uniqueTopic('reload');
    const p1 = new TestProducer(client);
    expect((await p1.open(topic)).opened).toBeTruthy();
    const consumer = new TestConsumer(client);
    expect((await consumer.subscribe({ topic, subscription: 's' }, 10)).subscribed).toBeTruthy();
    expect((await p1.sendAndWait('m0')).receipt).toBeTruthy();
    // An acknowledgement not flushed yet: the close must write the cursor, which is slow now.
    await consumer.waitFor(1);
    expect((await consumer.ack(consumer.received)).success).toBeTruthy();

    slow.set(1_000);
    const old = await tb.broker.service.loadedTopic(TopicName.parse(topic));
    expect(old).toBeDefined();
    const closing = old!.close('test: ownership lost');
    // Requested again at once (a producer reconnecting), while the old instance waits on its cursor write.
    const p2 = new TestProducer(client);
    const opened = p2.open(topic);
    await closing;
    slow.set(0);
    expect((await opened).opened, 'producer opened on the reloaded topic').toBeTruthy();
    const sent = await p2.sendAndWait('m1');
    expect(sent.sendError?.message ?? '', 'publish on the reloaded topic').toBe('');
    expect(sent.receipt).toBeTruthy();
    const now = await tb.broker.service.loadedTopic(TopicName.parse(topic));
    expect(now).toBeDefined();
    expect(now).not.toBe(old);
    p1.close();
    p2.close();
    consumer.close();
  }, 30_000);
});
