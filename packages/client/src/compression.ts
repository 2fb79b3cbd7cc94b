import { deflateSync, inflateSync } from 'node:zlib';
import { createRequire } from 'node:module';
import { ClientError, ClientErrorCode } from './errors.js';

/** pulsar-client's compression names. */
export type CompressionType = 'None' | 'LZ4' | 'Zlib' | 'ZSTD' | 'SNAPPY';
/** The wire enum (messages.proto CompressionType). */
export type WireCompression = 'NONE' | 'LZ4' | 'ZLIB' | 'ZSTD' | 'SNAPPY';

export const COMPRESSION_TYPES: readonly CompressionType[] = ['None', 'LZ4', 'Zlib', 'ZSTD', 'SNAPPY'];

export function toWireCompression(type: CompressionType): WireCompression {
  switch (type) {
    case 'None': return 'NONE';
    case 'LZ4': return 'LZ4';
    case 'Zlib': return 'ZLIB';
    case 'ZSTD': return 'ZSTD';
    case 'SNAPPY': return 'SNAPPY';
  }
}

// The codecs are native addons published as CommonJS; load them lazily so that an application that
// never compresses never loads them.
const require = createRequire(import.meta.url);
interface Lz4 { compressSync(b: Buffer): Buffer; uncompressSync(b: Buffer): Buffer }
interface Zstd { compress(b: Buffer): Buffer; decompress(b: Buffer): Buffer }
interface Snappy { compressSync(b: Buffer): Buffer; uncompressSync(b: Buffer, o?: { asBuffer: true }): Buffer }
let lz4: Lz4 | undefined;
let zstd: Zstd | undefined;
let snappy: Snappy | undefined;

export function compress(type: WireCompression, data: Buffer): Buffer {
  switch (type) {
    case 'NONE': return data;
    case 'LZ4': return (lz4 ??= require('lz4-napi') as Lz4).compressSync(data);
    case 'ZLIB': return deflateSync(data);
    case 'ZSTD': return (zstd ??= require('zstd-napi') as Zstd).compress(data);
    case 'SNAPPY': return (snappy ??= require('snappy') as Snappy).compressSync(data);
  }
}

/**
 * Inverts compress(). `uncompressedSize` (from the batch metadata) is checked so that a corrupt or
 * hostile payload cannot make the client allocate without bound.
 */
export function decompress(type: string, data: Buffer, uncompressedSize: number): Buffer {
  let out: Buffer;
  try {
    switch (type) {
      case 'NONE': return data;
      case 'LZ4': out = (lz4 ??= require('lz4-napi') as Lz4).uncompressSync(data); break;
      case 'ZLIB': out = inflateSync(data, { maxOutputLength: Math.max(1, uncompressedSize) }); break;
      case 'ZSTD': out = (zstd ??= require('zstd-napi') as Zstd).decompress(data); break;
      case 'SNAPPY': out = (snappy ??= require('snappy') as Snappy).uncompressSync(data, { asBuffer: true }); break;
      default:
        throw new ClientError(ClientErrorCode.UNSUPPORTED, `unknown compression type ${type}`);
    }
  } catch (err) {
    if (err instanceof ClientError) throw err;
    throw new ClientError(ClientErrorCode.INTERNAL, `cannot decompress a ${type} batch`, { cause: err });
  }
  if (out.length !== uncompressedSize) {
    throw new ClientError(ClientErrorCode.INTERNAL, `a ${type} batch decompressed to ${out.length} bytes, metadata says ${uncompressedSize}`);
  }
  return Buffer.from(out.buffer, out.byteOffset, out.length);
}
