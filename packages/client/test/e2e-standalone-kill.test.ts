// The hardest reconnection case: a real `strata standalone` process (coordinator, broker and two bookies
// writing with fsync to a temp dir) is SIGKILLed while a producer and a consumer run, then started
// again on the same data and ports. Every send the broker acknowledged must be delivered, in order.
// Needs `npx tsc -b packages/cli` first.
import { StandaloneProcess } from '@strata/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '../src/index.js';
import { unique } from './e2e-helpers.js';

let standalone: StandaloneProcess;

beforeAll(async () => {
  standalone = await StandaloneProcess.start();
}, 90_000);

afterAll(async () => {
  await standalone?.stop();
});

describe('standalone SIGKILL', () => {
  it('nothing acknowledged is lost and order is kept across a kill -9 and restart', async () => {
    const serviceUrl = standalone.serviceUrl;
    const client = new Client({ serviceUrl, operationTimeoutSeconds: 30, initialBackoffIntervalMs: 100, maxBackoffIntervalMs: 1000 });
    try {
      const topic = unique('kill');
      const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionInitialPosition: 'Earliest' });
      const producer = await client.createProducer({ topic, batchingMaxPublishDelayMs: 2, sendTimeoutMs: 120_000 });
      const total = 1000;
      const acked: number[] = [];
      let sent = 0;
      const produce = (async () => {
        while (sent < total) {
          const window = Array.from({ length: Math.min(25, total - sent) }, () => sent++);
          await Promise.all(window.map((n) => producer.send({ data: Buffer.from(String(n)) }).then(() => acked.push(n))));
        }
      })();
      const received: number[] = [];
      const consume = (async () => {
        const seen = new Set<number>();
        while (seen.size < total) {
          const m = await consumer.receive(120_000);
          const n = Number(m.getData().toString());
          received.push(n);
          seen.add(n);
          await consumer.acknowledge(m).catch(() => undefined);
        }
      })();
      const deadline = Date.now() + 60_000;
      while (acked.length < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(acked.length).toBeGreaterThanOrEqual(300);
      await standalone.kill();
      const ackedAtKill = acked.length;
      expect(ackedAtKill).toBeLessThan(total);
      expect(producer.isConnected()).toBe(false);
      await standalone.restart();
      await produce;
      await consume;
      expect(acked).toHaveLength(total);
      const firsts = received.filter((n, i) => received.indexOf(n) === i);
      expect(firsts).toEqual(Array.from({ length: total }, (_, i) => i));
      await producer.close();
      await consumer.close();
    } finally {
      await client.close();
    }
  }, 240_000);
});
