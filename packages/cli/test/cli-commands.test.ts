// The command layer over an in-memory stand-in for the SDK: checks flag wiring, output forms, the perf
// loops' stop conditions and exit codes. The real SDK against a real broker is covered by cli-e2e.test.ts.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerClientCommands } from '../src/commands/index.js';
import type { CliIo } from '../src/commands/io.js';
import type { CliClient, CliConsumer, CliConsumerConfig, CliMessage, CliProducer, CliProducerConfig, CliProducerMessage } from '../src/commands/sdk.js';

interface Stored { msg: CliProducerMessage; publishTime: number; id: number }

/** One topic log per topic name; each subscription reads it from the start (Earliest) or from the end. */
class MemoryClient implements CliClient {
  readonly topics = new Map<string, Stored[]>();
  readonly producerConfigs: CliProducerConfig[] = [];
  readonly consumerConfigs: CliConsumerConfig[] = [];
  private readonly cursors = new Map<string, number>();
  closed = 0;

  private log(topic: string): Stored[] {
    let l = this.topics.get(topic);
    if (!l) this.topics.set(topic, (l = []));
    return l;
  }

  async createProducer(config: CliProducerConfig): Promise<CliProducer> {
    this.producerConfigs.push(config);
    const log = this.log(config.topic);
    return {
      send: async (msg) => {
        await new Promise((r) => setImmediate(r));
        log.push({ msg, publishTime: Date.now(), id: log.length });
        return {};
      },
      flush: async () => null,
      close: async () => null,
    };
  }

  async subscribe(config: CliConsumerConfig): Promise<CliConsumer> {
    this.consumerConfigs.push(config);
    const topic = config.topic as string;
    const log = this.log(topic);
    const key = `${topic}/${config.subscription}`;
    if (!this.cursors.has(key)) this.cursors.set(key, config.subscriptionInitialPosition === 'Earliest' ? 0 : log.length);
    return {
      receive: async (timeout?: number) => {
        const deadline = Date.now() + (timeout ?? 1e9);
        for (;;) {
          const at = this.cursors.get(key) as number;
          const s = log[at];
          if (s) {
            this.cursors.set(key, at + 1);
            return messageOf(topic, s);
          }
          if (Date.now() >= deadline) throw Object.assign(new Error('Failed to receive message: TimeOut'), { code: 'TIMEOUT' });
          await new Promise((r) => setTimeout(r, 2));
        }
      },
      acknowledge: async () => null,
      close: async () => null,
    };
  }

  async close(): Promise<null> {
    this.closed++;
    return null;
  }
}

function messageOf(topic: string, s: Stored): CliMessage {
  return {
    getTopicName: () => topic,
    getData: () => s.msg.data,
    getProperties: () => s.msg.properties ?? {},
    getMessageId: () => ({ toString: () => `1:${s.id}:-1:-1` }),
    getPublishTimestamp: () => s.publishTime,
    getEventTimestamp: () => 0,
    getPartitionKey: () => s.msg.partitionKey ?? '',
    getRedeliveryCount: () => 0,
    getProducerName: () => 'p',
  };
}

function harness(client = new MemoryClient()) {
  const out: string[] = [];
  const err: string[] = [];
  const raw: Buffer[] = [];
  const io: CliIo = {
    out: (l) => void out.push(l),
    err: (l) => void err.push(l),
    write: (d) => void raw.push(Buffer.from(d)),
  };
  let exitCode = 0;
  const program = new Command('strata').exitOverride();
  registerClientCommands(program, { io, connect: () => client, setExitCode: (c) => { exitCode = c; }, exitWhenDone: false });
  const run = async (...argv: string[]): Promise<number> => {
    exitCode = 0;
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  };
  return { client, out, err, raw, run };
}

describe('produce and consume commands', () => {
  it('produces -m lists -n times with key and properties, then consumes them back as JSON', async () => {
    const h = harness();
    expect(await h.run('produce', 'my-topic', '-m', 'a,b', '-n', '2', '-k', 'key1', '-p', 'x=1')).toBe(0);
    expect(h.out).toEqual(['4 messages successfully produced']);
    const stored = h.client.topics.get('my-topic') ?? [];
    expect(stored.map((s) => s.msg.data.toString())).toEqual(['a', 'b', 'a', 'b']);
    expect(stored[0]?.msg).toMatchObject({ partitionKey: 'key1', properties: { x: '1' } });

    h.out.length = 0;
    expect(await h.run('consume', 'my-topic', '-s', 'sub', '-p', 'Earliest', '-n', '4', '--json')).toBe(0);
    expect(h.out.map((l) => JSON.parse(l).data)).toEqual(['a', 'b', 'a', 'b']);
    expect(JSON.parse(h.out[0] as string)).toMatchObject({ topic: 'my-topic', key: 'key1', properties: { x: '1' } });
    expect(h.err).toContain('4 messages successfully consumed');
    expect(h.client.consumerConfigs[0]).toMatchObject({ subscription: 'sub', subscriptionType: 'Exclusive', subscriptionInitialPosition: 'Earliest' });
  });

  it('prints pulsar-client style text and raw payloads', async () => {
    const h = harness();
    await h.run('produce', 't', '-m', 'hello', '-p', 'a=b');
    await h.run('consume', 't', '-s', 's1', '-p', 'Earliest');
    expect(h.out.slice(-2)).toEqual(['----- got message -----', 'key:[null], properties:[a=b], content:hello']);
    await h.run('consume', 't', '-s', 's2', '-p', 'Earliest', '--raw');
    expect(Buffer.concat(h.raw).toString()).toBe('hello\n');
  });

  it('dumps binary payloads in hex and can hide content', async () => {
    const h = harness();
    await h.run('produce', 'hx', '-m', 'AB\u0001');
    await h.run('consume', 'hx', '-s', 's1', '-p', 'Earliest', '--hex');
    expect(h.out[h.out.length - 1]).toBe(`key:[null], content:00000000  ${'41 42 01'.padEnd(47)}  AB.`);
    const before = h.out.length;
    await h.run('consume', 'hx', '-s', 's2', '-p', 'Earliest', '--hide-content');
    expect(h.out.length).toBe(before);
    expect(h.err[h.err.length - 1]).toBe('1 messages successfully consumed');
  });

  it('fails with one line and exit code 2 on bad usage, without connecting', async () => {
    const h = harness();
    expect(await h.run('consume', 't')).toBe(2);
    expect(h.err).toEqual(['error: -s/--subscription-name is required']);
    expect(await h.run('produce', 't', '-m', 'x', '--service-url', 'http://nope:1')).toBe(2);
    expect(h.client.closed).toBe(0);
  });
});

describe('perf commands', () => {
  it('perf produce stops at --num-messages and prints a JSON summary', async () => {
    const h = harness();
    expect(await h.run('perf', 'produce', 'pt', '-r', '0', '-m', '500', '-s', '100', '--warmup-time', '0', '--json')).toBe(0);
    const last = JSON.parse(h.out[h.out.length - 1] as string);
    expect(last.type).toBe('summary');
    expect(last.publish.messages).toBe(500);
    expect(last.publish.latency.count).toBe(500);
    expect(h.client.topics.get('pt')).toHaveLength(500);
    expect(h.client.topics.get('pt')?.[0]?.msg.data.length).toBe(100);
    expect(h.client.producerConfigs[0]).toMatchObject({ batchingEnabled: true, maxPendingMessages: 1000, blockIfQueueFull: true });
  });

  it('perf produce honours --rate and --test-duration and reports intervals', async () => {
    const h = harness();
    const t0 = Date.now();
    await h.run('perf', 'produce', 'rt', '-r', '200', '--test-duration', '1', '--warmup-time', '0', '--report-interval', '0.25', '--json');
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    const lines = h.out.map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === 'interval').length).toBeGreaterThanOrEqual(2);
    const sent = h.client.topics.get('rt')?.length ?? 0;
    // 200 msg/s for ~1 s, with the pacer's bounded catch-up.
    expect(sent).toBeGreaterThan(120);
    expect(sent).toBeLessThan(260);
  });

  it('perf consume measures end-to-end latency from the payload stamp', async () => {
    const h = harness();
    const consume = h.run('perf', 'consume', 'ct', '--test-duration', '1', '--subscription-position', 'Latest', '--json');
    await new Promise((r) => setTimeout(r, 100));
    const producer = harness(h.client);
    await producer.run('perf', 'produce', 'ct', '-r', '0', '-m', '300', '--warmup-time', '0', '--json');
    await consume;
    const summary = JSON.parse(h.out[h.out.length - 1] as string);
    expect(summary.consume.messages).toBe(300);
    expect(summary.consume.latency.count).toBe(300);
    expect(summary.consume.latency.maxMs).toBeLessThan(5000);
  });

  it('perf consume stops and fails with one line when a consumer breaks', async () => {
    const client = new MemoryClient();
    const broken = Object.assign(Object.create(client) as MemoryClient, {
      subscribe: async (): Promise<CliConsumer> => ({
        receive: async () => { throw Object.assign(new Error('Failed to receive message: ConnectError'), { code: 'UNAVAILABLE' }); },
        acknowledge: async () => null,
        close: async () => null,
      }),
    });
    const h = harness(broken);
    expect(await h.run('perf', 'consume', 'x', '-n', '2', '--subscription-type', 'Shared')).toBe(1);
    expect(h.err[h.err.length - 1]).toBe('error: Failed to receive message: ConnectError (UNAVAILABLE)');
  });

  it('perf run executes an OMB workload and writes its result', async () => {
    const { mkdtemp, writeFile, readFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'strata-cli-'));
    try {
      const file = join(dir, 'w.yaml');
      await writeFile(file, 'name: tiny\ntopics: 2\npartitionsPerTopic: 1\nmessageSize: 64\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nproducerRate: 400\nconsumerBacklogSizeGB: 0\ntestDurationMinutes: 15\n');
      const h = harness();
      const code = await h.run('perf', 'run', file, '--test-duration', '1', '--warmup-time', '0', '--report-interval', '0.5', '-o', join(dir, 'r.json'), '--json');
      expect(code).toBe(0);
      const result = JSON.parse(await readFile(join(dir, 'r.json'), 'utf8'));
      expect(result.workload).toBe('tiny');
      expect(result.publishRate.length).toBeGreaterThanOrEqual(1);
      expect(result.aggregatedPublishRate).toBeGreaterThan(200);
      expect(result.aggregatedEndToEndLatency99pct).toBeGreaterThan(0);
      expect([...h.client.topics.keys()].every((t) => t.startsWith('persistent://public/default/strata-perf-'))).toBe(true);

      await writeFile(file, 'topics: 1\nmessageSize: 10\nsubscriptionsPerTopic: 1\nconsumerPerSubscription: 1\nproducersPerTopic: 1\nconsumerBacklogSizeGB: 2\ntestDurationMinutes: 1\n');
      expect(await h.run('perf', 'run', file)).toBe(2);
      expect(h.err[h.err.length - 1]).toMatch(/^error: workload: consumerBacklogSizeGB > 0/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
