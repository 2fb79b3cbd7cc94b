import { describe, expect, it } from 'vitest';
import Pulsar, { AuthenticationToken, Client, ClientError, MessageId } from '../src/index.js';
import { compileConsumerConfig } from '../src/consumer/config.js';
import type { ConsumerConfig } from '../src/consumer/consumer.js';
import { compileProducerConfig, type ProducerConfig } from '../src/producer.js';

describe('default export', () => {
  it("has pulsar-client's shape", () => {
    expect(Pulsar.Client).toBe(Client);
    expect(Pulsar.MessageId).toBe(MessageId);
    expect(Pulsar.LogLevel).toEqual({ DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 });
    expect(typeof Pulsar.Client.setLogHandler).toBe('function');
    expect(Pulsar.AuthenticationToken).toBe(AuthenticationToken);
  });

  it('AuthenticationToken takes a string or a supplier, and the Client accepts it', async () => {
    await new Client({ serviceUrl: 'pulsar://x:1', authentication: new Pulsar.AuthenticationToken({ token: 'jwt' }) }).close();
    await new Client({ serviceUrl: 'http://x:1', authentication: new Pulsar.AuthenticationToken({ token: async () => 'jwt' }) }).close();
    for (const bad of [undefined, null, {}, { token: 5 }]) {
      expect(() => new Pulsar.AuthenticationToken(bad as never)).toThrow(expect.objectContaining({ code: 'INVALID_CONFIGURATION' }));
    }
  });
});

describe('Client options', () => {
  it('accepts pulsar://, strata:// and http:// (web lookup) service URLs', async () => {
    await new Client({ serviceUrl: 'pulsar://localhost:6650' }).close();
    await new Client({ serviceUrl: 'strata://a:1,b:2/' }).close();
    await new Client({ serviceUrl: 'http://localhost:8080' }).close();
    await new Client({ serviceUrl: 'http://a:8080,b/' }).close();
  });

  it.each([
    [{ serviceUrl: '' }, /Service URL is required/],
    [{ serviceUrl: 'https://x:1' }, /not supported: Strata has no TLS/],
    [{ serviceUrl: 'http://x:y' }, /Invalid host\[:port\]/],
    [{ serviceUrl: 'pulsar+ssl://x:6651' }, /not supported/],
    [{ serviceUrl: 'pulsar://nohost' }, /Invalid host:port/],
    [{ serviceUrl: 'pulsar://x:1', authentication: {} }, /authentication must be an AuthenticationToken/],
    [{ serviceUrl: 'pulsar://x:1', ioThreads: 4 }, /'ioThreads' is not supported/],
    [{ serviceUrl: 'pulsar+ssl://x:1', tlsTrustCertsFilePath: '/x' }, /TLS/],
    [{ serviceUrl: 'pulsar://x:1', operationTimeoutSeconds: -1 }, /operationTimeoutSeconds/],
    [{ serviceUrl: 'pulsar://x:1', bogus: 1 }, /'bogus' is not supported: unknown option/],
  ])('rejects %j', (config, message) => {
    expect(() => new Client(config as never)).toThrow(message);
    try {
      new Client(config as never);
    } catch (err) {
      expect(err).toBeInstanceOf(ClientError);
      expect(['INVALID_CONFIGURATION', 'UNSUPPORTED']).toContain((err as ClientError).code);
      expect((err as ClientError).retriable).toBe(false);
    }
  });

  it('routes logs to pulsar-client style log callbacks only when given one', async () => {
    const lines: string[] = [];
    const client = new Client({ serviceUrl: 'pulsar://127.0.0.1:1', operationTimeoutSeconds: 0.3, log: (_level, _file, _line, msg) => lines.push(msg), logLevel: Pulsar.LogLevel.DEBUG });
    await expect(client.createProducer({ topic: 't' })).rejects.toThrow(/Failed to create producer/);
    await client.close();
    expect(lines.some((l) => l.startsWith('opened broker channel'))).toBe(true);
    const quiet: string[] = [];
    const silent = new Client({ serviceUrl: 'pulsar://127.0.0.1:1', operationTimeoutSeconds: 0.3, log: (_level, _file, _line, msg) => quiet.push(msg), logLevel: Pulsar.LogLevel.ERROR });
    await expect(silent.createProducer({ topic: 't' })).rejects.toThrow(/Failed to create producer/);
    await silent.close();
    expect(quiet.some((l) => l.startsWith('opened broker channel'))).toBe(false);
  });

  it('fails fast when no broker answers, with a retriable code', async () => {
    const client = new Client({ serviceUrl: 'pulsar://127.0.0.1:1', operationTimeoutSeconds: 0.3 });
    await expect(client.subscribe({ topic: 't', subscription: 's' })).rejects.toMatchObject({ code: 'UNAVAILABLE', retriable: true, message: expect.stringMatching(/^Failed to create consumer: ConnectError/) });
    await client.close();
    await expect(client.createProducer({ topic: 't' })).rejects.toThrow('Failed to create producer: AlreadyClosed');
  });
});

describe('Producer options', () => {
  const base: ProducerConfig = { topic: 'my-topic' };
  it('fills pulsar-client defaults', () => {
    const c = compileProducerConfig(base);
    expect(c).toMatchObject({
      topic: 'persistent://public/default/my-topic', sendTimeoutMs: 30_000, maxPendingMessages: 1000, blockIfQueueFull: false,
      batchingEnabled: true, batchingMaxPublishDelayMs: 10, batchingMaxMessages: 1000, batchingMaxAllowedSizeInBytes: 131072,
      compression: 'NONE', messageRoutingMode: 'UseSinglePartition', hashingScheme: 'JavaStringHash', accessMode: 'SHARED',
    });
  });

  it('maps enums', () => {
    expect(compileProducerConfig({ ...base, compressionType: 'Zlib', accessMode: 'ExclusiveWithFencing', messageRoutingMode: 'RoundRobinDistribution', hashingScheme: 'Murmur3_32Hash' }))
      .toMatchObject({ compression: 'ZLIB', accessMode: 'EXCLUSIVE_WITH_FENCING', messageRoutingMode: 'RoundRobinDistribution', hashingScheme: 'Murmur3_32Hash' });
    expect(compileProducerConfig({ ...base, messageRoutingMode: 'SinglePartition' as never }).messageRoutingMode).toBe('UseSinglePartition');
  });

  it.each([
    [{ chunkingEnabled: true }, /'chunkingEnabled' is not supported/],
    [{ encryptionKey: 'k' }, /encryption/],
    [{ schema: { schemaType: 'Json' } }, /schema/],
    [{ hashingScheme: 'BoostHash' }, /BoostHash/],
    [{ batchingType: 'KeyBased' }, /batchingType must be one of/],
    [{ compressionType: 'GZIP' }, /compressionType must be one of/],
    [{ messageRoutingMode: 'CustomPartition' }, /needs a messageRouter/],
    [{ maxPendingMessages: 0 }, /maxPendingMessages must be an integer/],
    [{ batchingMaxMessages: 1e9 }, /batchingMaxMessages must be an integer/],
    [{ properties: { a: 1 } }, /properties.a must be a string/],
    [{ topic: 'a/b' }, /Invalid topic name/],
  ])('rejects %j', (extra, message) => {
    expect(() => compileProducerConfig({ ...base, ...extra } as never)).toThrow(message);
  });
});

describe('Consumer options', () => {
  const base: ConsumerConfig = { topic: 'my-topic', subscription: 's' };
  it('fills defaults and maps enums', () => {
    expect(compileConsumerConfig(base)).toMatchObject({ type: 'EXCLUSIVE_SUB', initialPosition: 'LATEST', receiverQueueSize: 1000, ackTimeoutMs: 0, nAckRedeliverTimeoutMs: 60_000 });
    expect(compileConsumerConfig({ ...base, nAckRedeliverTimeoutMs: 0 }).nAckRedeliverTimeoutMs).toBe(100); // pulsar-client's floor
    expect(compileConsumerConfig({ ...base, subscriptionType: 'Failover', subscriptionInitialPosition: 'Earliest' })).toMatchObject({ type: 'FAILOVER_SUB', initialPosition: 'EARLIEST' });
    expect(compileConsumerConfig({ ...base, deadLetterPolicy: {} }).deadLetter).toEqual({ topic: 'persistent://public/default/my-topic-s-DLQ', maxRedeliverCount: 16, initialSubscriptionName: undefined });
    const p = compileConsumerConfig({ topicsPattern: 'persistent://t1/ns1/orders-.*', subscription: 's' });
    expect(p.patternNamespace).toBe('t1/ns1');
    expect(p.pattern!.test('persistent://t1/ns1/orders-eu')).toBe(true);
    expect(p.pattern!.test('persistent://t1/ns1/payments')).toBe(false);
    expect(p.pattern!.test('non-persistent://t1/ns1/orders-eu')).toBe(false);
    const all = compileConsumerConfig({ topicsPattern: 'persistent://t1/ns1/orders-.*', subscription: 's', regexSubscriptionMode: 'AllTopics' });
    expect(all.pattern!.test('non-persistent://t1/ns1/orders-eu')).toBe(true);
    expect(all.pattern!.test('persistent://t1/ns1/orders-eu')).toBe(true);
    const np = compileConsumerConfig({ topicsPattern: 'non-persistent://t1/ns1/orders-.*', subscription: 's' });
    expect(np.pattern!.test('non-persistent://t1/ns1/orders-eu')).toBe(true);
    expect(np.pattern!.test('persistent://t1/ns1/orders-eu')).toBe(false);
  });

  it.each([
    [{ topic: undefined }, /Topic, topics or topicsPattern is required and must be specified as a string when creating consumer/],
    [{ topic: undefined, topics: [0] }, /Topic, topics or topicsPattern is required/],
    [{ nAckRedeliverTimeoutMs: -1 }, /NAck timeout should be greater than or equal to zero/],
    [{ batchReceivePolicy: { maxNumMessages: -1, maxNumBytes: -1, timeoutMs: -1 } }, /At least one of maxNumMessages, maxNumBytes and timeoutMs must be specified/],
    [{ topic: undefined, topicsPattern: 'x', regexSubscriptionMode: 'Some' }, /regexSubscriptionMode must be one of/],
    [{ topics: ['a'] }, /Exactly one of/],
    [{ subscription: '' }, /Subscription is required/],
    [{ readCompacted: true }, /compaction/],
    [{ receiverQueueSizeAcrossPartitions: 5 }, /receiverQueueSizeAcrossPartitions/],
    [{ batchIndexAckEnabled: 'yes' }, /batchIndexAckEnabled must be a boolean/],
    [{ enableRetry: 1 }, /enableRetry must be a boolean/],
    [{ deadLetterPolicy: { retryLetterTopic: 'r' } }, /retryLetterTopic needs enableRetry/],
    [{ schema: {} }, /schema/],
    [{ ackTimeoutMs: 500 }, /Ack timeout should be 0 or greater than or equal to 10000/],
    [{ receiverQueueSize: 0 }, /receiverQueueSize must be an integer/],
    [{ keySharedPolicy: { keyShareMode: 'AutoSplit' } }, /needs subscriptionType 'KeyShared'/],
    [{ subscriptionType: 'KeyShared', keySharedPolicy: { keyShareMode: 'Sticky' } }, /needs stickyRanges/],
    [{ deadLetterPolicy: { deadLetterTopic: 'x', bogus: 1 } }, /'bogus' is not supported/],
    [{ subscriptionType: 'exclusive' }, /subscriptionType must be one of/],
  ])('rejects %j', (extra, message) => {
    expect(() => compileConsumerConfig({ ...base, ...extra } as never)).toThrow(message);
  });
});
