import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compress, decompress, type WireCompression } from '../src/compression.js';
import { MessageId } from '../src/message.js';
import { decodeMessageBatch, encodeMessageBatch } from '../src/protocol.js';

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
