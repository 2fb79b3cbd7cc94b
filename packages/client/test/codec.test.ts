import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { compress, decompress, type WireCompression } from '../src/compression.js';
import { MessageId } from '../src/message.js';
import { protosDir } from '@strata/runtime';
import { decodeMessageBatch, encodeMessageBatch, type SingleMessage } from '../src/protocol.js';

describe('compression', () => {
  const text = Buffer.from('strata '.repeat(5000));
  const random = randomBytes(10_000);
  it.each(['NONE', 'LZ4', 'ZLIB', 'ZSTD', 'SNAPPY'] as WireCompression[])('%s round-trips', (type) => {
    for (const data of [text, random, Buffer.alloc(0)]) {
      const c = compress(type, data);
      expect(decompress(type, c, data.length).equals(data)).toBe(true);
    }
    if (type !== 'NONE') expect(compress(type, text).length).toBeLessThan(text.length / 10);
  });

  it('rejects a payload whose size does not match the metadata', () => {
    const c = compress('ZSTD', text);
    expect(() => decompress('ZSTD', c, text.length - 1)).toThrow(/decompress|metadata/);
    expect(() => decompress('ZLIB', compress('ZLIB', text), 10)).toThrow();
  });

  it('rejects an unknown compression type', () => {
    expect(() => decompress('BROTLI', text, text.length)).toThrow(/unknown compression/);
  });
});

describe('MessageBatch', () => {
  it('round-trips messages with all fields', () => {
    const bytes = encodeMessageBatch([
      { payload: Buffer.from('a'), properties: { k: 'v' }, partitionKey: 'key', eventTime: 123, sequenceId: 7 },
      { payload: Buffer.from('b'), orderingKey: Buffer.from('ok') },
    ]);
    const out = decodeMessageBatch(bytes);
    expect(out).toHaveLength(2);
    expect(Buffer.from(out[0]!.payload).toString()).toBe('a');
    expect(out[0]!.properties).toEqual({ k: 'v' });
    expect(out[0]!.partitionKey).toBe('key');
    expect(out[0]!.eventTime).toBe(123);
    expect(out[0]!.sequenceId).toBe(7);
    expect(Buffer.from(out[1]!.orderingKey).toString()).toBe('ok');
    expect(out[1]!.partitionKey).toBe('');
  });
});

describe('MessageBatch encoding without fromObject', () => {
  /** The reference: protobufjs' own conversion, which encodeMessageBatch skips for speed. */
  function reference(messages: SingleMessage[]): Buffer {
    const root = new protobuf.Root();
    const dir = protosDir();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(dir, target));
    root.loadSync('strata/broker/v1/messages.proto', { keepCase: false });
    const t = root.lookupType('strata.broker.v1.MessageBatch');
    return Buffer.from(t.encode(t.fromObject({ messages })).finish());
  }

  it('gives the same bytes as protobufjs fromObject + encode, for every field and 64-bit values', () => {
    const messages: SingleMessage[] = [
      {
        payload: randomBytes(1024), properties: { a: '1', 'b-ü': 'x'.repeat(300) }, partitionKey: 'pk', orderingKey: Buffer.from('ok'),
        eventTime: 2 ** 41 + 3, sequenceId: Number.MAX_SAFE_INTEGER, replicationClusters: ['c1', 'c2'], disableReplication: true,
        deliverAtTime: 1_790_000_000_000,
      },
      { payload: Buffer.alloc(0), properties: {}, partitionKey: '', orderingKey: Buffer.alloc(0), eventTime: 0, sequenceId: 0, replicationClusters: [], disableReplication: false },
      { payload: Buffer.from('only a payload') },
    ];
    const bytes = encodeMessageBatch(messages);
    expect(bytes.equals(reference(messages))).toBe(true);
    const out = decodeMessageBatch(bytes);
    expect(out[0]!.eventTime).toBe(2 ** 41 + 3);
    expect(out[0]!.sequenceId).toBe(Number.MAX_SAFE_INTEGER);
    expect(out[0]!.deliverAtTime).toBe(1_790_000_000_000);
    expect(out[0]!.replicationClusters).toEqual(['c1', 'c2']);
    expect(out[0]!.disableReplication).toBe(true);
    expect(out[0]!.properties).toEqual({ a: '1', 'b-ü': 'x'.repeat(300) });
    expect(Buffer.from(out[2]!.payload).toString()).toBe('only a payload');
  });

  it('returns a Buffer that is not a copy of a copy (the encoder output as is)', () => {
    const bytes = encodeMessageBatch([{ payload: randomBytes(100_000) }]);
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(bytes.length).toBeGreaterThan(100_000);
  });
});

describe('MessageId', () => {
  it('serializes and deserializes', () => {
    const id = new MessageId(12, 34, 5, 6);
    const back = MessageId.deserialize(id.serialize());
    expect(back.toString()).toBe('(12,34,6,5)');
    expect(back.equals(id)).toBe(true);
    expect(MessageId.deserialize(MessageId.earliest().serialize()).isEarliest()).toBe(true);
    expect(MessageId.deserialize(MessageId.latest().serialize()).isLatest()).toBe(true);
    expect(MessageId.deserialize(new MessageId(2 ** 40, 2 ** 33).serialize()).ledgerId).toBe(2 ** 40);
  });

  it('prints like pulsar-client', () => {
    expect(MessageId.earliest().toString()).toBe('(-1,-1,-1,-1)');
    expect(new MessageId(1, 2).toString()).toBe('(1,2,-1,-1)');
  });

  it('rejects garbage', () => {
    expect(() => MessageId.deserialize(Buffer.from([0xff, 0xff, 0xff]))).toThrow(/deserialize/);
    expect(() => MessageId.deserialize('x' as unknown as Buffer)).toThrow(/Buffer/);
  });
});
