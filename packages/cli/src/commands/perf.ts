/**
 * `strata perf produce | consume | run`: load generators on the SDK, measuring what an application sees.
 *
 * - Publish latency: from the call to `send()` to its acknowledgement.
 * - End-to-end latency: from the moment the producer built the message (a wall-clock stamp at the front
 *   of the payload, see pacing.ts) to the moment a consumer received it. Messages without a stamp (sent by
 *   another tool) fall back to the broker's millisecond publish timestamp.
 *
 * Every producer keeps at most `maxOutstanding` sends in flight; at `--rate 0` that window is what sets
 * the pace. Runs stop on the test duration, the message budget, or the caller's signal (SIGINT).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { AdminApi } from '@strata/client/admin';
import { UsageError, describeError, isReceiveTimeout } from './errors.js';
import type { CliSubscriptionType, PerfConsumeOptions, PerfProduceOptions } from './flags.js';
import { serviceTargets } from './flags.js';
import type { CliIo } from './io.js';
import { sleep } from './io.js';
import { Pacer, readStamp, stampPayload, wallClockMicros } from './pacing.js';
import type { ClientFactory, CliClient, CliConsumer, CliProducer, CliProducerMessage } from './sdk.js';
import type { IntervalReport, OmbResult, SummaryReport } from './stats.js';
import { PerfMeter, addOmbInterval, emptyOmbResult, finishOmbResult, formatInterval, formatOmbSummary, formatSummary } from './stats.js';
import type { Workload } from './workload.js';
import { buildPayloads } from './workload.js';

export interface PerfDeps {
  io: CliIo;
  connect: ClientFactory;
  /** Aborted on SIGINT: the run stops and still prints its summary. */
  signal: AbortSignal;
  /** Makes the admin door for creating partitioned topics; defaults to gRPC on the service URL. */
  admin?: (serviceUrl: string) => Pick<AdminApi, 'createPartitionedTopic' | 'close'>;
}

/** How long a stopping producer waits for its in-flight sends before giving up on them. */
const DRAIN_TIMEOUT_MS = 30_000;
const RECEIVE_POLL_MS = 200;
/** Sends issued back to back before the loop lets I/O run (only matters at --rate 0). */
const SENDS_PER_YIELD = 64;

/** A shared message budget; `take()` is false once it is spent. Infinity means no limit. */
class Budget {
  constructor(private remaining: number) {}
  take(): boolean {
    if (this.remaining <= 0) return false;
    this.remaining--;
    return true;
  }
}

type KeyGen = (() => string) | undefined;

interface ProducerLoop {
  producer: CliProducer;
  payloads: readonly Buffer[];
  rate: number;
  maxOutstanding: number;
  key: KeyGen;
  budget: Budget;
  stop: AbortSignal;
  meter: PerfMeter;
  onError: (err: unknown) => void;
}

async function runProducerLoop(l: ProducerLoop): Promise<void> {
  const pacer = new Pacer(l.rate, performance.now());
  let outstanding = 0;
  // One waiter at a time: woken by a send completing, by stop, or by its timeout.
  let wake: (() => void) | undefined;
  const wakeUp = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const waitForCompletion = (timeoutMs: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(wakeUp, timeoutMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  l.stop.addEventListener('abort', wakeUp, { once: true });
  try {
    let next = 0;
    let sinceYield = 0;
    while (!l.stop.aborted && l.budget.take()) {
      for (let d = pacer.delayMs(performance.now()); d > 0 && !l.stop.aborted; d = pacer.delayMs(performance.now())) await sleep(d, l.stop);
      while (outstanding >= l.maxOutstanding && !l.stop.aborted) await waitForCompletion(1000);
      if (l.stop.aborted) break;
      const payload = l.payloads[next++ % l.payloads.length] as Buffer;
      const message: CliProducerMessage = { data: stampPayload(payload, wallClockMicros()) };
      if (l.key) message.partitionKey = l.key();
      const t0 = performance.now();
      outstanding++;
      l.producer.send(message).then(
        () => l.meter.recordSend(message.data.length, (performance.now() - t0) * 1000),
        (err: unknown) => {
          l.meter.recordSendError();
          l.onError(err);
        },
      ).finally(() => {
        outstanding--;
        wakeUp();
      });
      if (++sinceYield >= SENDS_PER_YIELD) {
        sinceYield = 0;
        await yieldToIo();
      }
    }
    const deadline = performance.now() + DRAIN_TIMEOUT_MS;
    while (outstanding > 0 && performance.now() < deadline) await waitForCompletion(100);
  } finally {
    l.stop.removeEventListener('abort', wakeUp);
  }
}

async function runConsumerLoop(consumer: CliConsumer, meter: PerfMeter, stop: AbortSignal, onError: (err: unknown) => void): Promise<void> {
  while (!stop.aborted) {
    let msg;
    try {
      msg = await consumer.receive(RECEIVE_POLL_MS);
    } catch (err) {
      if (isReceiveTimeout(err) || stop.aborted) continue;
      throw err;
    }
    const data = msg.getData();
    const stamp = readStamp(data);
    const publishMs = msg.getPublishTimestamp();
    const e2eUs = stamp !== undefined ? wallClockMicros() - stamp : publishMs > 0 ? (Date.now() - publishMs) * 1000 : undefined;
    meter.recordReceive(data.length, e2eUs === undefined ? undefined : Math.max(0, e2eUs));
    consumer.acknowledge(msg).catch(onError);
  }
}

/** Runs the loops to the end; the first failure stops the others (through `stop`) and is rethrown. */
async function runLoops(stop: AbortController, loops: readonly (() => Promise<void>)[]): Promise<void> {
  let first: unknown;
  let failed = false;
  await Promise.all(loops.map((loop) => loop().catch((err: unknown) => {
    if (!failed) {
      failed = true;
      first = err;
    }
    stop.abort();
  })));
  if (failed) throw first;
}

/** Prints an interval line every `intervalS` until stopped. */
function startReporter(meter: PerfMeter, intervalS: number, io: CliIo, json: boolean, onInterval?: (r: IntervalReport) => void): () => void {
  const timer = setInterval(() => {
    const r = meter.takeInterval(performance.now());
    io.out(json ? JSON.stringify(r) : formatInterval(r));
    onInterval?.(r);
  }, intervalS * 1000);
  return () => clearInterval(timer);
}

/** An AbortController that follows `parent` and can also be aborted on its own (duration, budget). */
function childController(parent: AbortSignal): AbortController {
  const c = new AbortController();
  if (parent.aborted) c.abort();
  else parent.addEventListener('abort', () => c.abort(), { once: true });
  return c;
}

/** Remembers the first error of background loops and reports a few of them on stderr. */
function errorSink(io: CliIo): { onError: (err: unknown) => void; count: () => number } {
  let n = 0;
  return {
    onError: (err) => {
      n++;
      if (n <= 5) io.err(`error: ${describeError(err)}`);
      if (n === 6) io.err('(further errors are counted in the report, not printed)');
    },
    count: () => n,
  };
}

async function createPartitioned(deps: PerfDeps, serviceUrl: string, topics: readonly string[], partitions: number, json: boolean): Promise<void> {
  const admin = deps.admin ? deps.admin(serviceUrl) : new AdminApi(serviceTargets(serviceUrl));
  try {
    if (!json) deps.io.err(`creating ${topics.length} partitioned topic(s) with ${partitions} partitions`);
    for (const t of topics) {
      try {
        await admin.createPartitionedTopic(t, partitions);
      } catch (err) {
        if ((err as { code?: unknown }).code !== 'ALREADY_EXISTS') throw err;
      }
    }
  } finally {
    admin.close();
  }
}

async function closeAll(items: readonly { close(): Promise<unknown> }[]): Promise<void> {
  await Promise.allSettled(items.map((i) => i.close()));
}

function perfPayloads(o: PerfProduceOptions): Buffer[] {
  if (o.payloadFile === undefined) return [randomBytes(o.sizeBytes)];
  let text: string;
  try {
    text = readFileSync(o.payloadFile, 'utf8');
  } catch (err) {
    throw new UsageError(`--payload-file: cannot read '${o.payloadFile}': ${(err as Error).message}`, { cause: err });
  }
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length === 0) throw new UsageError(`--payload-file: '${o.payloadFile}' has no non-empty line`);
  return lines.map((l) => Buffer.from(l, 'utf8'));
}

function keyGen(mode: 'none' | 'autoIncrement' | 'random' | 'NO_KEY' | 'KEY_ROUND_ROBIN' | 'RANDOM_NANO'): KeyGen {
  let n = 0;
  switch (mode) {
    case 'autoIncrement':
      return () => String(n++);
    case 'KEY_ROUND_ROBIN': {
      // OMB cycles through a fixed pool of random keys.
      const pool = Array.from({ length: 10_000 }, () => randomBytes(4).toString('hex'));
      return () => pool[n++ % pool.length] as string;
    }
    case 'random':
    case 'RANDOM_NANO':
      return () => randomBytes(8).toString('hex');
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------

export async function runPerfProduce(o: PerfProduceOptions, deps: PerfDeps): Promise<SummaryReport> {
  const { io } = deps;
  const payloads = perfPayloads(o);
  if (o.partitions > 0) await createPartitioned(deps, o.serviceUrl, o.topics, o.partitions, o.json);
  const client = deps.connect(o.serviceUrl);
  const producers: CliProducer[] = [];
  try {
    for (const topic of o.topics) {
      for (let i = 0; i < o.producersPerTopic; i++) {
        producers.push(await client.createProducer({
          topic,
          batchingEnabled: o.batchingEnabled,
          batchingMaxPublishDelayMs: o.batchingMaxPublishDelayMs,
          batchingMaxMessages: o.batchingMaxMessages,
          ...(o.batchingMaxAllowedSizeInBytes === undefined ? {} : { batchingMaxAllowedSizeInBytes: o.batchingMaxAllowedSizeInBytes }),
          maxPendingMessages: o.maxOutstanding,
          blockIfQueueFull: true,
          compressionType: o.compression,
          ...(o.partitions > 1 ? { messageRoutingMode: 'RoundRobinDistribution' as const } : {}),
        }));
      }
    }
    if (!o.json) io.err(`${producers.length} producer(s) on ${o.topics.length} topic(s), rate ${o.rate === 0 ? 'max' : `${o.rate} msg/s`}, ${payloads[0]?.length ?? 0} B messages`);
    const meter = new PerfMeter({ publish: true, consume: false, subscriptions: 0 }, performance.now());
    const stop = childController(deps.signal);
    const errors = errorSink(io);
    const timers = scheduleRun(stop, o.testDurationS, o.warmupS, meter);
    const stopReporter = startReporter(meter, o.reportIntervalS, io, o.json);
    const budget = new Budget(o.numMessages > 0 ? o.numMessages : Infinity);
    try {
      await runLoops(stop, producers.map((producer) => () => runProducerLoop({
        producer, payloads, rate: o.rate / producers.length, maxOutstanding: o.maxOutstanding,
        key: keyGen(o.keyMode), budget, stop: stop.signal, meter, onError: errors.onError,
      })));
    } finally {
      stopReporter();
      timers();
    }
    return printSummary(meter, io, o.json);
  } finally {
    await closeAll(producers);
    await client.close();
  }
}

export async function runPerfConsume(o: PerfConsumeOptions, deps: PerfDeps): Promise<SummaryReport> {
  const { io } = deps;
  const client = deps.connect(o.serviceUrl);
  const consumers: CliConsumer[] = [];
  try {
    for (const topic of o.topics) {
      for (const subscription of o.subscriptions) {
        for (let i = 0; i < o.consumersPerSubscription; i++) {
          consumers.push(await client.subscribe({
            topic, subscription, subscriptionType: o.subscriptionType,
            subscriptionInitialPosition: o.initialPosition, receiverQueueSize: o.receiverQueueSize,
          }));
        }
      }
    }
    if (!o.json) io.err(`${consumers.length} consumer(s) on ${o.topics.length} topic(s), ${o.subscriptions.length} subscription(s) each`);
    const meter = new PerfMeter({ publish: false, consume: true, subscriptions: o.subscriptions.length }, performance.now());
    const stop = childController(deps.signal);
    const errors = errorSink(io);
    const timers = scheduleRun(stop, o.testDurationS, 0, meter);
    const stopReporter = startReporter(meter, o.reportIntervalS, io, o.json);
    try {
      await runLoops(stop, consumers.map((c) => () => runConsumerLoop(c, meter, stop.signal, errors.onError)));
    } finally {
      stopReporter();
      timers();
    }
    return printSummary(meter, io, o.json);
  } finally {
    await closeAll(consumers);
    await client.close();
  }
}

/** Stops the run after `durationS` (0 = never) and restarts the totals after `warmupS`. Returns a cancel. */
function scheduleRun(stop: AbortController, durationS: number, warmupS: number, meter: PerfMeter): () => void {
  const timers: NodeJS.Timeout[] = [];
  if (durationS > 0) timers.push(setTimeout(() => stop.abort(), (warmupS + durationS) * 1000));
  if (warmupS > 0) timers.push(setTimeout(() => meter.restartTotals(performance.now()), warmupS * 1000));
  return () => timers.forEach((t) => clearTimeout(t));
}

function printSummary(meter: PerfMeter, io: CliIo, json: boolean): SummaryReport {
  const s = meter.summary(performance.now());
  io.out(json ? JSON.stringify(s) : formatSummary(s, { publish: meter.publishHistogram(), endToEnd: meter.endToEndHistogram() }));
  return s;
}

// ---------------------------------------------------------------------------------------------------
// OpenMessaging Benchmark workloads

export interface WorkloadRunOptions {
  serviceUrl: string;
  /** tenant/namespace the run's topics are made in. */
  namespace: string;
  /** Overrides testDurationMinutes / warmupDurationMinutes (for smoke runs and the bench script). */
  testDurationS?: number;
  warmupS?: number;
  subscriptionType?: CliSubscriptionType;
  reportIntervalS: number;
  json: boolean;
  /** The bytes of the workload's payloadFile, read by the caller (relative to the workload file). */
  payloadFileBytes?: Buffer;
}

/** Runs an OMB workload: consumers first, then producers; prints intervals and OMB's aggregated result. */
export async function runWorkload(w: Workload, o: WorkloadRunOptions, deps: PerfDeps): Promise<OmbResult> {
  const { io } = deps;
  const runId = randomBytes(4).toString('hex');
  const topics = Array.from({ length: w.topics }, (_, i) => `persistent://${o.namespace}/strata-perf-${runId}-${i}`);
  const partitioned = w.partitionsPerTopic > 1;
  if (partitioned) await createPartitioned(deps, o.serviceUrl, topics, w.partitionsPerTopic, o.json);
  const payloads = buildPayloads(w, o.payloadFileBytes);
  const testS = o.testDurationS ?? w.testDurationMinutes * 60;
  const warmupS = o.warmupS ?? w.warmupDurationMinutes * 60;
  const subscriptionType = o.subscriptionType ?? (w.consumerPerSubscription > 1 ? 'Shared' : 'Exclusive');

  const client: CliClient = deps.connect(o.serviceUrl);
  const consumers: CliConsumer[] = [];
  const producers: CliProducer[] = [];
  try {
    if (!o.json) io.err(`workload '${w.name}': ${w.topics} topic(s) x ${w.partitionsPerTopic} partition(s), ${w.producersPerTopic} producer(s) and ${w.subscriptionsPerTopic} x ${w.consumerPerSubscription} consumer(s) per topic`);
    for (const topic of topics) {
      for (let s = 0; s < w.subscriptionsPerTopic; s++) {
        for (let c = 0; c < w.consumerPerSubscription; c++) {
          consumers.push(await client.subscribe({
            topic, subscription: `sub-${s}-${runId}`, subscriptionType, subscriptionInitialPosition: 'Earliest',
          }));
        }
      }
      for (let p = 0; p < w.producersPerTopic; p++) {
        producers.push(await client.createProducer({
          topic, batchingEnabled: true, batchingMaxPublishDelayMs: 1, maxPendingMessages: 1000, blockIfQueueFull: true,
          ...(partitioned ? { messageRoutingMode: 'RoundRobinDistribution' as const } : {}),
        }));
      }
    }
    const meter = new PerfMeter({ publish: true, consume: w.subscriptionsPerTopic > 0, subscriptions: w.subscriptionsPerTopic }, performance.now());
    const result = emptyOmbResult({
      workload: w.name, messageSize: w.messageSize, topics: w.topics, partitions: w.partitionsPerTopic,
      producersPerTopic: w.producersPerTopic, consumersPerTopic: w.subscriptionsPerTopic * w.consumerPerSubscription,
    });
    const stop = childController(deps.signal);
    const errors = errorSink(io);
    let measuring = warmupS === 0;
    if (!o.json && warmupS > 0) io.err(`warm-up ${warmupS} s, then ${testS} s measured`);
    const warmupTimer = setTimeout(() => {
      measuring = true;
      if (!o.json) io.err('warm-up done, measuring');
    }, warmupS * 1000);
    const timers = scheduleRun(stop, testS, warmupS, meter);
    const stopReporter = startReporter(meter, o.reportIntervalS, io, o.json, (r) => { if (measuring) addOmbInterval(result, r); });
    const budget = new Budget(Infinity);
    try {
      await runLoops(stop, [
        ...producers.map((producer) => () => runProducerLoop({
          producer, payloads, rate: w.producerRate / producers.length, maxOutstanding: 1000,
          key: keyGen(w.keyDistributor), budget, stop: stop.signal, meter, onError: errors.onError,
        })),
        ...consumers.map((c) => () => runConsumerLoop(c, meter, stop.signal, errors.onError)),
      ]);
    } finally {
      clearTimeout(warmupTimer);
      stopReporter();
      timers();
    }
    finishOmbResult(result, meter.summary(performance.now()));
    io.out(o.json ? JSON.stringify({ type: 'result', ...result }) : formatOmbSummary(result));
    return result;
  } finally {
    await closeAll(producers);
    await closeAll(consumers);
    await client.close();
  }
}
