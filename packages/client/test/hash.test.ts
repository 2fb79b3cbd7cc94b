import { describe, expect, it } from 'vitest';
import { javaStringHash, murmur3_32, partitionForKey } from '../src/hash.js';

describe('JavaStringHash', () => {
  // Vectors of java.lang.String#hashCode (UTF-16 code units, 32-bit overflow).
  it.each([
    ['', 0],
    ['abc', 96354],
    ['hello', 99162322],
    ['Hello World', -862545276],
    ['\u00e9', 233],
    ['\ud83d\ude00', 31 * 0xd83d + 0xde00],
  ])('hash(%j) = %d', (key, expected) => {
    expect(javaStringHash(key)).toBe(expected);
  });

  it('routes keys like Pulsar: (hash & Integer.MAX_VALUE) % partitions', () => {
    // -862545276 & 0x7fffffff = 1284938372; % 7 = 1284938372 - 7 * 183562624 = 4.
    expect(partitionForKey('JavaStringHash', 'Hello World', 7)).toBe(4);
    expect(partitionForKey('JavaStringHash', 'hello', 10)).toBe(2);
  });
});

describe('Murmur3_32Hash', () => {
  // Reference vectors of MurmurHash3_x86_32 (SMHasher's verification set).
  it.each([
    ['', 0, 0],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['\0\0\0\0', 0, 0x2362f9de],
    ['a', 0x9747b28c, 0x7fa09ea6],
    ['abc', 0x9747b28c, 0xc84a62dd],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['Hello, world!', 0x9747b28c, 0x24884cba],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ])('murmur3(%j, seed %d)', (key, seed, expected) => {
    expect(murmur3_32(Buffer.from(key, 'utf8'), seed)).toBe(expected);
  });

  it('routes keys with seed 0 and the sign bit cleared', () => {
    const h = murmur3_32(Buffer.from('key-1'), 0) & 0x7fffffff;
    expect(partitionForKey('Murmur3_32Hash', 'key-1', 13)).toBe(h % 13);
    // Multi-byte UTF-8 keys hash their UTF-8 bytes.
    expect(partitionForKey('Murmur3_32Hash', 'ключ', 1 << 30)).toBe((murmur3_32(Buffer.from('ключ', 'utf8')) & 0x7fffffff) % (1 << 30));
  });
});
