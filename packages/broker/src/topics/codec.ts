import { join } from 'node:path';
import protobuf from 'protobufjs';
import { protosDir } from '@strata/runtime';
import type { BatchMetadata__Output } from '../generated/strata/broker/v1/BatchMetadata.js';
import type { EntryEnvelope__Output } from '../generated/strata/broker/v1/EntryEnvelope.js';

/**
 * Encoding of the ledger entry payload: an EntryEnvelope (messages.proto). Same field naming and
 * conversions as the gRPC layer (camelCase, longs as Number, enums as String, defaults), so a decoded
 * envelope is handed to gRPC as is.
 */
let envelopeType: protobuf.Type | undefined;

function type(): protobuf.Type {
  if (!envelopeType) {
    const root = new protobuf.Root();
    const dir = protosDir();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(dir, target));
    root.loadSync('strata/broker/v1/messages.proto', { keepCase: false });
    envelopeType = root.lookupType('strata.broker.v1.EntryEnvelope');
  }
  return envelopeType;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true };

export function encodeEnvelope(metadata: BatchMetadata__Output, batch: Buffer): Buffer {
  const t = type();
  const message = t.fromObject({ metadata, batch });
  return asBuffer(t.encode(message).finish());
}

/** A Buffer over the same bytes: protobufjs already returns a Buffer in Node, and copying a whole batch per entry costs. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeEnvelope(payload: Buffer): EntryEnvelope__Output {
  const t = type();
  const obj = t.toObject(t.decode(payload), TO_OBJECT) as EntryEnvelope__Output;
  if (obj.batch && !Buffer.isBuffer(obj.batch)) obj.batch = Buffer.from(obj.batch);
  return obj;
}

/** The publish time stored in an entry, or undefined when the payload is not an envelope. */
export function publishTimeOf(payload: Buffer): number | undefined {
  try {
    const t = decodeEnvelope(payload).metadata?.publishTime;
    return t ? Number(t) : undefined;
  } catch {
    return undefined;
  }
}
