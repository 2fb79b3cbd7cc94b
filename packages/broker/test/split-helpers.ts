// Shared by the hot-bundle split tests (bundle-split*.test.ts): a producer/consumer flow with its
// history, topic names in a hash range, an SDK log capture, and the split scenario with its checks.
import { Client, type Consumer, type Logger as SdkLogger, type Producer } from '@strata/client';
import { namespaceBundles, type BundlePolicy, type MetadataStore, type WatchEvent } from '@strata/coordinator';
import { expect } from 'vitest';
import { topicHash, TopicName } from '../src/names.js';

export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A topic name of `namespace` whose hash falls in [from, to). */
export function topicIn(namespace: string, prefix: string, from: number, to: number): string {
  for (let i = 0; ; i++) {
    const name = `persistent://${namespace}/${prefix}-${i}`;
    const h = topicHash(TopicName.parse(name));
    if (h >= from && h < to) return name;
  }
}

export interface SdkEvent { msg: string; at: number; fields: Record<string, unknown> }

/** An SDK logger recording every line into `events` (proves the streams really moved). */
export function captureLogger(events: SdkEvent[], bindings: Record<string, unknown> = {}): SdkLogger {
  const log = (obj: object, msg?: string) => events.push({ msg: msg ?? '', at: Date.now(), fields: { ...bindings, ...obj } });
  return { debug: log, info: log, warn: log, error: log, child: (more) => captureLogger(events, { ...bindings, ...more }) };
}

/** The SDK client of the split tests: quick retries, every SDK log line recorded in `events`. */
export function splitClient(address: string, events: SdkEvent[]): Client {
  return new Client({
    serviceUrl: `pulsar://${address}`, operationTimeoutSeconds: 15, initialBackoffIntervalMs: 50, maxBackoffIntervalMs: 500,
    logger: captureLogger(events),
  });
}

/** A producer sending 0, 1, 2, ... in windows of 10 every `pauseMs`, and a consumer acking all it gets. */
export class Flow {
  readonly acked: number[] = [];
  readonly ackedAt: Array<{ n: number; sentAt: number; at: number }> = [];
  readonly failed: unknown[] = [];
  readonly received: number[] = [];
  private sent = 0;
  private stopProducing = false;
  private stopConsuming = false;
  private producing: Promise<void> | undefined;
  private consuming: Promise<void> | undefined;

  constructor(readonly producer: Producer, readonly consumer: Consumer, private readonly pauseMs: number) {}

  start(): this {
    this.producing = (async () => {
      while (!this.stopProducing) {
        const sentAt = Date.now();
        const window = Array.from({ length: 10 }, () => this.sent++);
        await Promise.all(window.map((n) => this.producer.send({ data: Buffer.from(String(n)) }).then(
          () => {
            this.acked.push(n);
            this.ackedAt.push({ n, sentAt, at: Date.now() });
          },
          (err: unknown) => this.failed.push(err),
        )));
        await new Promise((r) => setTimeout(r, this.pauseMs));
      }
    })();
    this.consuming = (async () => {
      while (!this.stopConsuming) {
        const m = await this.consumer.receive(500).catch(async () => {
          await new Promise((r) => setTimeout(r, 50));
          return undefined;
        });
        if (!m) continue;
        this.received.push(Number(m.getData().toString()));
        await this.consumer.acknowledge(m).catch(() => undefined);
      }
    })();
    return this;
  }

  firstAckAfter(t0: number): number | undefined {
    const a = this.ackedAt.find((x) => x.sentAt > t0);
    return a ? a.at - t0 : undefined;
  }

  async finish(): Promise<void> {
    this.stopProducing = true;
    await this.producing;
    await until('every acknowledged message delivered', () => {
      const got = new Set(this.received);
      return this.acked.every((n) => got.has(n));
    }, 30_000).catch(() => undefined);
    this.stopConsuming = true;
    await this.consuming;
  }

  check(): void {
    expect(this.failed).toEqual([]);
    const got = new Set(this.received);
    expect(this.acked.filter((n) => !got.has(n)), 'acknowledged but never delivered').toEqual([]);
    const firsts = this.received.filter((n, i) => this.received.indexOf(n) === i);
    expect(firsts, 'first deliveries in send order').toEqual([...firsts].sort((a, b) => a - b));
  }
}

/** Reads a namespace's policy and its bundles' owners from the store. */
export class SplitView {
  /** Every change under ownership/, in revision order (start() watches). */
  readonly ownershipEvents: WatchEvent[] = [];

  constructor(readonly store: MetadataStore, readonly namespace: string) {}

  async start(): Promise<void> {
    await this.store.watch('ownership/', { onEvent: (e) => this.ownershipEvents.push(e) });
  }

  async policy(): Promise<BundlePolicy & Record<string, unknown>> {
    const kv = await this.store.get(`admin/policies/${this.namespace}`);
    return JSON.parse((kv as { value: Buffer }).value.toString()) as BundlePolicy & Record<string, unknown>;
  }

  async bundles(): Promise<ReturnType<typeof namespaceBundles>> {
    return namespaceBundles(this.namespace, await this.policy());
  }

  async owner(bundle: string): Promise<string | undefined> {
    const kv = await this.store.get(`ownership/${bundle}`);
    return kv ? (JSON.parse(kv.value.toString()) as { brokerId: string }).brokerId : undefined;
  }

  async waitOwned(bundles: readonly string[], timeoutMs: number): Promise<void> {
    await until(`${bundles.length} bundles owned`, async () => (await Promise.all(bundles.map((b) => this.owner(b)))).every((o) => o !== undefined), timeoutMs);
  }
}

/**
 * Drives the first bundle of the namespace above the leader's (low) message-rate limit with two SDK
 * flows (one topic in each future half) and checks: the leader splits exactly that bundle at the middle;
 * other bundles are unchanged; both halves get owned, each acquired after the old range was released;
 * both topics' producers and consumers reconnect; nothing acknowledged is lost; first deliveries in
 * send order. `splitTime()` resolves when the split is seen. Returns the timings measured.
 */
export async function expectHotBundleSplit(options: {
  client: Client; view: SplitView; sdkEvents: SdkEvent[]; prefix: string; pauseMs: number;
  splitTime(): Promise<number>;
}): Promise<{ ownedMs: number; firstAckMs: number[] }> {
  const { client, view, sdkEvents } = options;
  const before = await view.bundles();
  const hot = before[0] as (typeof before)[number];
  const mid = hot.start + Math.floor((hot.end - hot.start) / 2);
  const topics = [topicIn(view.namespace, `${options.prefix}-a`, hot.start, mid), topicIn(view.namespace, `${options.prefix}-b`, mid, hot.end)];
  const flows = await Promise.all(topics.map(async (topic) => {
    const consumer = await client.subscribe({ topic, subscription: 'sub', subscriptionType: 'Failover', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic, batchingMaxPublishDelayMs: 1, sendTimeoutMs: 30_000 });
    return new Flow(producer, consumer, options.pauseMs).start();
  }));

  const splitAt = await options.splitTime();
  const after = await view.bundles();
  expect(after).toHaveLength(before.length + 1);
  const halves = after.filter((b) => b.start >= hot.start && b.end <= hot.end);
  expect(halves.map((b) => [b.start, b.end])).toEqual([[hot.start, mid], [mid, hot.end]]);
  expect(after.filter((b) => !halves.includes(b)).map((b) => b.id)).toEqual(before.slice(1).map((b) => b.id));

  await view.waitOwned(halves.map((h) => h.id), 30_000);
  const ownedMs = Date.now() - splitAt;
  expect(await view.owner(hot.id)).toBeUndefined();
  // The halves were acquired only after the old owner had released the old range (no overlapping owners).
  const released = view.ownershipEvents.find((e) => e.type === 'delete' && e.key === `ownership/${hot.id}`);
  expect(released).toBeDefined();
  for (const h of halves) {
    const acquired = view.ownershipEvents.find((e) => e.type === 'put' && e.key === `ownership/${h.id}`);
    expect(acquired!.modRevision).toBeGreaterThan(released!.modRevision);
  }

  await until('a publish sent after the split acknowledged on both topics', () => flows.every((f) => f.firstAckAfter(splitAt) !== undefined), 30_000);
  const firstAckMs = flows.map((f) => f.firstAckAfter(splitAt) as number);
  const count = flows.map((f) => f.acked.length);
  await until('more publishes after the split', () => flows.every((f, i) => f.acked.length >= (count[i] as number) + 30), 30_000);
  await Promise.all(flows.map((f) => f.finish()));
  for (const f of flows) f.check();
  // The old owner closed both topics (their bundle id no longer existed) and the SDK reconnected them.
  for (const topic of topics) {
    const about = (msg: string) => sdkEvents.filter((e) => e.msg === msg && e.at >= splitAt - 1_000 && String(e.fields.topic) === topic);
    expect(about('producer disconnected').length, `${topic} producer moved`).toBeGreaterThanOrEqual(1);
    expect(about('consumer disconnected').length, `${topic} consumer moved`).toBeGreaterThanOrEqual(1);
  }
  await Promise.all(flows.flatMap((f) => [f.producer.close(), f.consumer.close()]));
  return { ownedMs, firstAckMs };
}
