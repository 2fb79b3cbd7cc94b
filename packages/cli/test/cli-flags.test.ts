import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/commands/errors.js';
import {
  checkBundleRange, compileConsumeOptions, compilePerfConsumeOptions, compilePerfProduceOptions, compileProduceOptions, expandTopics,
  parseCompression, parseInitialPosition, parseInteger, parseProperties, parseSize, parseSubscriptionType, serviceTargets,
} from '../src/commands/flags.js';

describe('primitive flag parsers', () => {
  it('parses integers with bounds and names the flag when wrong', () => {
    expect(parseInteger('-n', '42', { min: 0, fallback: 1 })).toBe(42);
    expect(parseInteger('-n', undefined, { min: 0, fallback: 7 })).toBe(7);
    expect(() => parseInteger('-n', '4.5', { fallback: 0 })).toThrow(/-n must be an integer/);
    expect(() => parseInteger('-n', '-1', { min: 0, fallback: 0 })).toThrow(/-n must be >= 0/);
    expect(() => parseInteger('-n', 'abc', { fallback: 0 })).toThrow(UsageError);
  });

  it('parses sizes with binary units', () => {
    expect(parseSize('-s', '1024', { fallback: 0 })).toBe(1024);
    expect(parseSize('-s', '1KB', { fallback: 0 })).toBe(1024);
    expect(parseSize('-s', '4mb', { fallback: 0 })).toBe(4 * 1024 * 1024);
    expect(parseSize('-s', '0.5k', { fallback: 0 })).toBe(512);
    expect(() => parseSize('-s', '1GBX', { fallback: 0 })).toThrow(/size like/);
    expect(() => parseSize('-s', '10MB', { max: 5 * 1024 * 1024, fallback: 0 })).toThrow(/at most/);
  });

  it('accepts pulsar-client and Node spellings of subscription types and positions', () => {
    expect(parseSubscriptionType('-t', 'Key_Shared')).toBe('KeyShared');
    expect(parseSubscriptionType('-t', 'keyshared')).toBe('KeyShared');
    expect(parseSubscriptionType('-t', 'FAILOVER')).toBe('Failover');
    expect(parseSubscriptionType('-t', undefined)).toBe('Exclusive');
    expect(() => parseSubscriptionType('-t', 'Broadcast')).toThrow(/-t must be one of Exclusive, Shared, Failover, KeyShared/);
    expect(parseInitialPosition('-p', 'earliest')).toBe('Earliest');
    expect(() => parseInitialPosition('-p', 'middle')).toThrow(UsageError);
    expect(parseCompression('-z', 'lz4')).toBe('LZ4');
    expect(parseCompression('-z', 'zlib')).toBe('Zlib');
  });

  it('parses key=value properties from repeats and comma lists', () => {
    expect(parseProperties('-p', ['a=1,b=2', 'c=x=y'])).toEqual({ a: '1', b: '2', c: 'x=y' });
    expect(() => parseProperties('-p', ['novalue'])).toThrow(/key=value/);
  });

  it('turns service URLs into gRPC targets and rejects bad ones as usage errors', () => {
    expect(serviceTargets(undefined)).toEqual(['localhost:6650']);
    expect(serviceTargets('pulsar://127.0.0.1:7000')).toEqual(['127.0.0.1:7000']);
    expect(serviceTargets('pulsar://a:1,b:2')).toEqual(['a:1', 'b:2']);
    expect(() => serviceTargets('http://x:1')).toThrow(UsageError);
    expect(() => serviceTargets('pulsar://nohost')).toThrow(/--service-url/);
  });
});

describe('produce flags', () => {
  const files: Record<string, Buffer> = { '/a.bin': Buffer.from([1, 2, 3]) };
  const readFile = (p: string): Buffer => {
    const b = files[p];
    if (!b) throw new Error('ENOENT: no such file');
    return b;
  };

  it('splits messages on the separator and appends files, in order', () => {
    const o = compileProduceOptions('my-topic', { messages: ['a,b', 'c'], files: ['/a.bin'], numProduce: '3', key: 'k', properties: ['x=1'] }, readFile);
    expect(o.payloads.map((p) => p.toString('latin1'))).toEqual(['a', 'b', 'c', '\u0001\u0002\u0003']);
    expect(o.numProduce).toBe(3);
    expect(o.key).toBe('k');
    expect(o.properties).toEqual({ x: '1' });
    expect(o.serviceUrl).toBe('pulsar://localhost:6650');
    expect(o.batchingEnabled).toBe(true);
  });

  it('uses a custom separator', () => {
    const o = compileProduceOptions('t', { messages: ['a,b|c'], separator: '|' }, readFile);
    expect(o.payloads.map(String)).toEqual(['a,b', 'c']);
  });

  it('requires content and reports unreadable files', () => {
    expect(() => compileProduceOptions('t', {}, readFile)).toThrow(/-m\/--messages or -f\/--files/);
    expect(() => compileProduceOptions('t', { files: ['/missing'] }, readFile)).toThrow(/cannot read '\/missing'/);
    expect(() => compileProduceOptions('t', { messages: ['x'], numProduce: '0' }, readFile)).toThrow(/num-produce must be >= 1/);
  });

  it('rejects malformed topic names', () => {
    expect(() => compileProduceOptions('a/b', { messages: ['x'] }, readFile)).toThrow(/not a topic name/);
    expect(() => compileProduceOptions('kafka://a/b/c', { messages: ['x'] }, readFile)).toThrow(UsageError);
    expect(compileProduceOptions('persistent://t/n/x', { messages: ['x'] }, readFile).topic).toBe('persistent://t/n/x');
  });
});

describe('consume flags', () => {
  it('requires a subscription and defaults like pulsar-client', () => {
    expect(() => compileConsumeOptions('t', {})).toThrow(/subscription-name is required/);
    const o = compileConsumeOptions('t', { subscriptionName: 's' });
    expect(o).toMatchObject({ subscription: 's', subscriptionType: 'Exclusive', initialPosition: 'Latest', numMessages: 1, output: 'text' });
  });

  it('takes -n 0 as forever and picks one output form', () => {
    const o = compileConsumeOptions('t', { subscriptionName: 's', numMessages: '0', raw: true, subscriptionType: 'Shared', subscriptionPosition: 'Earliest' });
    expect(o).toMatchObject({ numMessages: 0, output: 'raw', subscriptionType: 'Shared', initialPosition: 'Earliest' });
    expect(() => compileConsumeOptions('t', { subscriptionName: 's', raw: true, json: true })).toThrow(/exclude each other/);
  });

  it('checks --regex patterns', () => {
    expect(compileConsumeOptions('persistent://public/default/a.*', { subscriptionName: 's', regex: true }).regex).toBe(true);
    expect(() => compileConsumeOptions('(', { subscriptionName: 's', regex: true })).toThrow(/not a regular expression/);
  });
});

describe('perf flags', () => {
  it('has pulsar-perf defaults', () => {
    const o = compilePerfProduceOptions(['t'], {});
    expect(o).toMatchObject({
      topics: ['t'], rate: 100, sizeBytes: 1024, producersPerTopic: 1, numMessages: 0, partitions: 0, batchingEnabled: true,
      batchingMaxPublishDelayMs: 1, maxOutstanding: 1000, compression: 'None', testDurationS: 0, reportIntervalS: 5, json: false, keyMode: 'none',
    });
  });

  it('expands --num-topics like pulsar-perf', () => {
    expect(expandTopics(['t'], 3)).toEqual(['t-0', 't-1', 't-2']);
    expect(expandTopics(['a', 'b'], 2)).toEqual(['a', 'b']);
    expect(() => expandTopics(['a', 'b'], 3)).toThrow(/num-topics is 3 but 2 topics/);
  });

  it('parses rates, sizes and batching flags', () => {
    const o = compilePerfProduceOptions(['t'], { rate: '0', size: '4KB', disableBatching: true, batchMaxBytes: '64KB', numProducers: '2', testDuration: '10', json: true });
    expect(o).toMatchObject({ rate: 0, sizeBytes: 4096, batchingEnabled: false, batchingMaxAllowedSizeInBytes: 65536, producersPerTopic: 2, testDurationS: 10, json: true });
    expect(() => compilePerfProduceOptions(['t'], { rate: '-1' })).toThrow(/rate must be >= 0/);
    expect(() => compilePerfProduceOptions(['t'], { numProducers: '2000' })).toThrow(/more than one process runs/);
    expect(() => compilePerfProduceOptions([], {})).toThrow(/at least one topic/);
  });

  it('names several subscriptions and refuses many consumers on an Exclusive one', () => {
    const o = compilePerfConsumeOptions(['t'], { numSubscriptions: '2', subscriberName: 'x', numConsumers: '3', subscriptionType: 'Shared' });
    expect(o.subscriptions).toEqual(['x-0', 'x-1']);
    expect(o.consumersPerSubscription).toBe(3);
    expect(() => compilePerfConsumeOptions(['t'], { numConsumers: '2' })).toThrow(/Exclusive subscription takes one consumer/);
  });
});

describe('admin arguments', () => {
  it('checks bundle ranges', () => {
    expect(checkBundleRange('0x00000000_0x40000000')).toBe('0x00000000_0x40000000');
    expect(() => checkBundleRange('0x40000000_0x00000000')).toThrow(/start below end/);
    expect(() => checkBundleRange('0xdeadbeef_0x1')).toThrow(UsageError);
  });
});
