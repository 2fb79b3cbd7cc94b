/**
 * Key hashes for partition routing, bit-for-bit compatible with Pulsar's clients so that a keyed
 * message lands on the same partition whichever client produced it.
 */

/** Java's `String.hashCode()` over UTF-16 code units, as a signed 32-bit integer. */
export function javaStringHash(key: string): number {
  let h = 0;
  for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
  return h;
}

/** MurmurHash3 x86 32-bit over bytes with a seed; unsigned 32-bit result. */
export function murmur3_32(data: Uint8Array, seed = 0): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = data.length >>> 2;
  for (let i = 0; i < blocks; i++) {
    const o = i * 4;
    let k = (data[o]! | (data[o + 1]! << 8) | (data[o + 2]! << 16) | (data[o + 3]! << 24)) | 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  const rest = data.length & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= data[tail + 2]! << 16;
    if (rest >= 2) k ^= data[tail + 1]! << 8;
    k ^= data[tail]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export type HashingScheme = 'JavaStringHash' | 'Murmur3_32Hash' | 'BoostHash';

/**
 * The non-negative hash Pulsar's routers take modulo the partition count: the scheme's 32-bit value
 * with the sign bit cleared (`& Integer.MAX_VALUE`), Murmur3 over the key's UTF-8 bytes with seed 0.
 */
export function routingHash(scheme: 'JavaStringHash' | 'Murmur3_32Hash', key: string): number {
  const h = scheme === 'JavaStringHash' ? javaStringHash(key) : murmur3_32(Buffer.from(key, 'utf8'), 0);
  return (h & 0x7fffffff) >>> 0;
}

/** The partition of a keyed message. */
export function partitionForKey(scheme: 'JavaStringHash' | 'Murmur3_32Hash', key: string, partitions: number): number {
  return routingHash(scheme, key) % partitions;
}
