import { crc32c } from '@node-rs/crc32';

/**
 * Byte layouts shared by the journal and the segment files (docs/storage.md draws them). All integers
 * are little-endian. Ids are JS numbers below 2^53, stored as u64; a last-add-confirmed of -1 is stored
 * as lac + 1 so that every stored integer is unsigned.
 */

const TWO_32 = 2 ** 32;

export function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32LE(value % TWO_32, offset);
  buf.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}

export function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * TWO_32;
}

// ---- Journal records: [u32 bodyLength][u32 crc32c(fixed part of body)][body] ----
// The record CRC covers the body's fixed fields; an ADD's payload is covered by the payload CRC32C among
// them (checked against the payload on admission and again on replay), so the hot path computes the
// payload's CRC once, not twice.

export const JOURNAL_RECORD_HEADER = 8;
export const RECORD_ADD = 1;
export const RECORD_FENCE = 2;
/** Body of an ADD before its payload: type, ledgerId, entryId, lac + 1, payload CRC32C. */
const ADD_FIXED = 1 + 8 + 8 + 8 + 4;
const FENCE_BODY = 1 + 8;
/** A record body larger than this is treated as garbage on replay (no valid record is that big). */
export const MAX_RECORD_BODY = 1 << 30;

export type JournalRecord =
  | { type: 'add'; ledgerId: number; entryId: number; lastAddConfirmed: number; crc32c: number; payload: Buffer }
  | { type: 'fence'; ledgerId: number };

/** Encodes a record as buffers for writev; the payload is not copied. */
export function encodeJournalRecord(record: JournalRecord): Buffer[] {
  if (record.type === 'fence') {
    const out = Buffer.allocUnsafe(JOURNAL_RECORD_HEADER + FENCE_BODY);
    out.writeUInt32LE(FENCE_BODY, 0);
    out.writeUInt8(RECORD_FENCE, 8);
    writeU64(out, 9, record.ledgerId);
    out.writeUInt32LE(crc32c(out.subarray(8)), 4);
    return [out];
  }
  const head = Buffer.allocUnsafe(JOURNAL_RECORD_HEADER + ADD_FIXED);
  head.writeUInt32LE(ADD_FIXED + record.payload.length, 0);
  head.writeUInt8(RECORD_ADD, 8);
  writeU64(head, 9, record.ledgerId);
  writeU64(head, 17, record.entryId);
  writeU64(head, 25, record.lastAddConfirmed + 1);
  head.writeUInt32LE(record.crc32c >>> 0, 33);
  head.writeUInt32LE(crc32c(head.subarray(8)), 4);
  return [head, record.payload];
}

/** Encodes a record into `buf` at `at` (which must have room); returns the bytes written. */
export function encodeJournalRecordInto(record: JournalRecord, buf: Buffer, at: number): number {
  if (record.type === 'fence') {
    buf.writeUInt32LE(FENCE_BODY, at);
    buf.writeUInt8(RECORD_FENCE, at + 8);
    writeU64(buf, at + 9, record.ledgerId);
    buf.writeUInt32LE(crc32c(buf.subarray(at + 8, at + 8 + FENCE_BODY)), at + 4);
    return JOURNAL_RECORD_HEADER + FENCE_BODY;
  }
  buf.writeUInt32LE(ADD_FIXED + record.payload.length, at);
  buf.writeUInt8(RECORD_ADD, at + 8);
  writeU64(buf, at + 9, record.ledgerId);
  writeU64(buf, at + 17, record.entryId);
  writeU64(buf, at + 25, record.lastAddConfirmed + 1);
  buf.writeUInt32LE(record.crc32c >>> 0, at + 33);
  buf.writeUInt32LE(crc32c(buf.subarray(at + 8, at + 8 + ADD_FIXED)), at + 4);
  record.payload.copy(buf, at + JOURNAL_RECORD_HEADER + ADD_FIXED);
  return JOURNAL_RECORD_HEADER + ADD_FIXED + record.payload.length;
}

export function journalRecordBytes(record: JournalRecord): number {
  return JOURNAL_RECORD_HEADER + (record.type === 'fence' ? FENCE_BODY : ADD_FIXED + record.payload.length);
}

export type DecodeResult =
  | { kind: 'record'; record: JournalRecord; bytes: number }
  /** Not enough bytes for a whole record: at end of file this is a torn tail. */
  | { kind: 'short' }
  | { kind: 'corrupt'; reason: string };

/** Decodes the record at `offset`; never trusts a length or type that the CRC has not vouched for. */
export function decodeJournalRecord(buf: Buffer, offset: number): DecodeResult {
  if (buf.length - offset < JOURNAL_RECORD_HEADER) return { kind: 'short' };
  const bodyLength = buf.readUInt32LE(offset);
  if (bodyLength === 0 || bodyLength > MAX_RECORD_BODY) return { kind: 'corrupt', reason: `bad record length ${bodyLength}` };
  if (buf.length - offset < JOURNAL_RECORD_HEADER + bodyLength) return { kind: 'short' };
  const body = buf.subarray(offset + JOURNAL_RECORD_HEADER, offset + JOURNAL_RECORD_HEADER + bodyLength);
  const type = body.readUInt8(0);
  const fixed = type === RECORD_FENCE ? FENCE_BODY : type === RECORD_ADD ? ADD_FIXED : 0;
  if (fixed === 0 || bodyLength < fixed || (type === RECORD_FENCE && bodyLength !== FENCE_BODY)) {
    return { kind: 'corrupt', reason: `bad record type ${type} or length ${bodyLength}` };
  }
  if (crc32c(body.subarray(0, fixed)) !== buf.readUInt32LE(offset + 4)) return { kind: 'corrupt', reason: 'record CRC32C mismatch' };
  const bytes = JOURNAL_RECORD_HEADER + bodyLength;
  if (type === RECORD_FENCE) {
    return { kind: 'record', bytes, record: { type: 'fence', ledgerId: readU64(body, 1) } };
  }
  const payload = Buffer.from(body.subarray(ADD_FIXED));
  if (crc32c(payload) !== body.readUInt32LE(25)) return { kind: 'corrupt', reason: 'payload CRC32C mismatch' };
  return {
    kind: 'record',
    bytes,
    record: {
      type: 'add',
      ledgerId: readU64(body, 1),
      entryId: readU64(body, 9),
      lastAddConfirmed: readU64(body, 17) - 1,
      crc32c: body.readUInt32LE(25),
      payload,
    },
  };
}

// ---- Segment files ----

/** Entry header in a `.log` file: magic, payload length, payload CRC32C, ledgerId, entryId, lac + 1. */
export const LOG_HEADER = 4 + 4 + 4 + 8 + 8 + 8;
export const LOG_MAGIC = 0x47_4c_54_53; // "STLG"
/** One `.index` record: entryId, offset of the entry header in the `.log`, payload length, CRC32C. */
export const INDEX_RECORD = 8 + 8 + 4 + 4;

export function encodeLogHeader(ledgerId: number, entryId: number, lastAddConfirmed: number, crc: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(LOG_HEADER);
  out.writeUInt32LE(LOG_MAGIC, 0);
  out.writeUInt32LE(length, 4);
  out.writeUInt32LE(crc >>> 0, 8);
  writeU64(out, 12, ledgerId);
  writeU64(out, 20, entryId);
  writeU64(out, 28, lastAddConfirmed + 1);
  return out;
}

export interface LogHeader {
  magic: number;
  length: number;
  crc32c: number;
  ledgerId: number;
  entryId: number;
  lastAddConfirmed: number;
}

export function decodeLogHeader(buf: Buffer, offset: number): LogHeader {
  return {
    magic: buf.readUInt32LE(offset),
    length: buf.readUInt32LE(offset + 4),
    crc32c: buf.readUInt32LE(offset + 8),
    ledgerId: readU64(buf, offset + 12),
    entryId: readU64(buf, offset + 20),
    lastAddConfirmed: readU64(buf, offset + 28) - 1,
  };
}

/** File names carry a number zero-padded to 20 digits so that names sort like the numbers. */
export function numberedName(n: number, ext: string): string {
  return `${String(n).padStart(20, '0')}${ext}`;
}

export function parseNumberedName(name: string, ext: string): number | undefined {
  if (!name.endsWith(ext)) return undefined;
  const digits = name.slice(0, -ext.length);
  if (!/^\d{1,20}$/.test(digits)) return undefined;
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : undefined;
}
