import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { authenticationInterceptor, type TokenSource } from './auth.js';
import { protoDescriptor } from './generated/descriptor.js';
import type { ProtoGrpcType as BrokerGrpc } from './generated/broker.js';
import type { ProtoGrpcType as AdminGrpc } from './generated/admin.js';
import type { BrokerClient } from './generated/strata/broker/v1/Broker.js';
import type { AdminClient } from './generated/strata/broker/v1/Admin.js';
import type { SingleMessage, SingleMessage__Output } from './generated/strata/broker/v1/SingleMessage.js';
import type { EntryEnvelope__Output } from './generated/strata/broker/v1/EntryEnvelope.js';
import type { MessageId as WireMessageId, MessageId__Output } from './generated/strata/broker/v1/MessageId.js';

export type { BrokerClient, AdminClient, SingleMessage, SingleMessage__Output, EntryEnvelope__Output, MessageId__Output };

/** Must match the flags scripts/gen-protos.mjs gives the type generator (it applies keepCase: false when it writes the descriptor). */
const PROTO_LOADER_OPTIONS: protoLoader.Options = { longs: Number, enums: String, defaults: true, oneofs: true };

interface Loaded {
  grpcBroker: BrokerGrpc['strata']['broker']['v1'];
  grpcAdmin: AdminGrpc['strata']['broker']['v1'];
  messageBatch: protobuf.Type;
  entryEnvelope: protobuf.Type;
  messageId: protobuf.Type;
}

let loaded: Loaded | undefined;

/**
 * The protos come from a descriptor that scripts/gen-protos.mjs generates from protos/ (broker.proto,
 * admin.proto, messages.proto, parsed with camelCase field names) and tsc compiles into dist: the SDK reads
 * no .proto file at run time, so it works the same in this workspace and installed from a tarball.
 */
function load(): Loaded {
  if (loaded) return loaded;
  const definition = protoLoader.fromJSON(protoDescriptor, PROTO_LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(definition) as unknown as BrokerGrpc & AdminGrpc;
  // protobufjs directly for the payload messages that never travel as a gRPC argument of their own.
  const root = protobuf.Root.fromJSON(protoDescriptor);
  loaded = {
    grpcBroker: pkg.strata.broker.v1,
    grpcAdmin: pkg.strata.broker.v1,
    messageBatch: root.lookupType('strata.broker.v1.MessageBatch'),
    entryEnvelope: root.lookupType('strata.broker.v1.EntryEnvelope'),
    messageId: root.lookupType('strata.broker.v1.MessageId'),
  };
  return loaded;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A broker that froze (SIGSTOP, a long pause) or vanished without closing its connections (host
  // down, partition) is noticed within 3-6 s, so streams end and reconnection starts: its bundles move
  // after its 3 s session anyway (decision 0064), and the clients should follow about as fast. A broker
  // whose event loop stalls past 3 s costs its clients a reconnect (and resend, dedup-safe), no more.
  'grpc.keepalive_time_ms': 3_000,
  'grpc.keepalive_timeout_ms': 3_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  // Reconnection is the SDK's job (it re-looks-up the topic); keep grpc's own retries short.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  // Receive window for deliveries (Node's default, 64 KiB, stalls large messages): as the brokers' (0081).
  'grpc-node.flow_control_window': 1024 * 1024,
};

/**
 * One channel to one broker, carrying both services. With a token source, every call on it carries
 * `authorization: Bearer <token>` (one interceptor for the connection, sharing its token).
 */
export function createBrokerClients(address: string, token?: TokenSource): { broker: BrokerClient; admin: AdminClient } {
  const p = load();
  const interceptors = token ? { interceptors: [authenticationInterceptor(token)] } : {};
  const broker = new p.grpcBroker.Broker(address, grpc.credentials.createInsecure(), { ...CHANNEL_OPTIONS, ...interceptors });
  const admin = new p.grpcAdmin.Admin(address, grpc.credentials.createInsecure(), { channelOverride: broker.getChannel(), ...interceptors });
  return { broker, admin };
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/**
 * The messages must be well-typed SingleMessage objects (numbers for the 64-bit fields, Buffers for
 * bytes, string maps): they are encoded as they are, without protobufjs' per-message `fromObject`
 * conversion (SingleMessage has no enum or oneof fields that would need it). The producer builds them.
 */
export function encodeMessageBatch(messages: SingleMessage[]): Buffer {
  const t = load().messageBatch;
  return asBuffer(t.encode({ messages }).finish());
}

/** A Buffer over the same bytes: protobufjs returns a Buffer in Node already; copying a batch again costs. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeMessageBatch(bytes: Uint8Array): SingleMessage__Output[] {
  const t = load().messageBatch;
  const obj = t.toObject(t.decode(bytes), TO_OBJECT) as { messages: SingleMessage__Output[] };
  return obj.messages;
}

export function encodeEntryEnvelope(envelope: object): Buffer {
  const t = load().entryEnvelope;
  return asBuffer(t.encode(t.fromObject(envelope)).finish());
}

export function encodeMessageIdData(id: WireMessageId): Buffer {
  const t = load().messageId;
  return Buffer.from(t.encode(t.fromObject(id)).finish());
}

export function decodeMessageIdData(bytes: Uint8Array): MessageId__Output {
  const t = load().messageId;
  return t.toObject(t.decode(bytes), TO_OBJECT) as MessageId__Output;
}
