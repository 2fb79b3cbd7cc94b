import { ClientError, ClientErrorCode } from './errors.js';
import { decodeMessageIdData, encodeMessageIdData } from './protocol.js';

const LATEST = Number.MAX_SAFE_INTEGER;

/**
 * Where a message is: (ledgerId, entryId, batchIndex, partition), compared in that order within one
 * partition. `batchIndex` is -1 for a message that is alone in its entry; `partition` is -1 on a
 * non-partitioned topic. Immutable.
 */
export class MessageId {
  readonly ledgerId: number;
  readonly entryId: number;
  readonly batchIndex: number;
  readonly partition: number;
  /** Messages in the entry (1 when not batched); lets acknowledgement track whole entries. */
  readonly batchSize: number;
  /** The topic (partition) the message came from; set on received messages, not serialized. */
  readonly topic: string | undefined;

  constructor(ledgerId: number, entryId: number, batchIndex = -1, partition = -1, batchSize = 1, topic?: string) {
    this.ledgerId = ledgerId;
    this.entryId = entryId;
    this.batchIndex = batchIndex;
    this.partition = partition;
    this.batchSize = batchSize;
    this.topic = topic;
  }

  /** Before the first message of a topic. */
  static earliest(): MessageId {
    return new MessageId(-1, -1, -1, -1);
  }

  /** After the last message of a topic. */
  static latest(): MessageId {
    return new MessageId(LATEST, LATEST, -1, -1);
  }

  /** Rebuilds an id from serialize()'s bytes. */
  static deserialize(data: Buffer): MessageId {
    if (!((data as unknown) instanceof Uint8Array)) {
      throw new ClientError(ClientErrorCode.INVALID_ARGUMENT, 'MessageId.deserialize expects a Buffer');
    }
    let w;
    try {
      w = decodeMessageIdData(data);
    } catch (err) {
      throw new ClientError(ClientErrorCode.INVALID_ARGUMENT, 'Cannot deserialize a MessageId from these bytes', { cause: err });
    }
    return new MessageId(w.ledgerId, w.entryId, w.batchIndex, w.partition);
  }

  /** A compact binary form (the wire's MessageId message), stable across versions. */
  serialize(): Buffer {
    return encodeMessageIdData({ ledgerId: this.ledgerId, entryId: this.entryId, batchIndex: this.batchIndex, partition: this.partition });
  }

  /** `(ledgerId,entryId,partition,batchIndex)`, as pulsar-client prints ids. */
  toString(): string {
    return `(${this.ledgerId},${this.entryId},${this.partition},${this.batchIndex})`;
  }

  isEarliest(): boolean {
    return this.ledgerId === -1 && this.entryId === -1;
  }

  isLatest(): boolean {
    return this.ledgerId === LATEST && this.entryId === LATEST;
  }

  /** Same position (topic is ignored). */
  equals(other: MessageId): boolean {
    return compareMessageIds(this, other) === 0 && this.partition === other.partition;
  }

  /** The id on the wire. */
  toWire(): { ledgerId: number; entryId: number; batchIndex: number; partition: number } {
    return { ledgerId: this.ledgerId, entryId: this.entryId, batchIndex: this.batchIndex, partition: this.partition };
  }
}

/** Orders ids of one partition: ledger, entry, then batch index (-1 sorts as "the whole entry", first). */
export function compareMessageIds(a: MessageId, b: MessageId): number {
  return (a.ledgerId - b.ledgerId) || (a.entryId - b.entryId) || (a.batchIndex - b.batchIndex);
}

/** What the application passes to Producer.send(). */
export interface ProducerMessage {
  data: Buffer;
  properties?: { [key: string]: string };
  /** Milliseconds since the epoch. */
  eventTimestamp?: number;
  sequenceId?: number;
  partitionKey?: string;
  orderingKey?: string;
  replicationClusters?: string[];
  /** Delayed delivery, relative (ms). */
  deliverAfter?: number;
  /** Delayed delivery, absolute (ms since the epoch). */
  deliverAt?: number;
  disableReplication?: boolean;
}

export interface MessageFields {
  topicName: string;
  data: Buffer;
  properties: { [key: string]: string };
  messageId: MessageId;
  publishTimestamp: number;
  eventTimestamp: number;
  redeliveryCount: number;
  partitionKey: string;
  orderingKey: string;
  producerName: string;
  replicatedFrom: string;
  sequenceId: number;
  /** Uncompressed bytes of the payload, for batchReceive's byte limit. */
  size: number;
}

/** A received message (or, for a custom router, the message about to be sent). Immutable. */
export class Message {
  readonly #f: MessageFields;

  constructor(fields: MessageFields) {
    this.#f = fields;
  }

  getTopicName(): string { return this.#f.topicName; }
  getProperties(): { [key: string]: string } { return { ...this.#f.properties }; }
  getData(): Buffer { return this.#f.data; }
  getMessageId(): MessageId { return this.#f.messageId; }
  /** When the broker stored the message (ms since the epoch). */
  getPublishTimestamp(): number { return this.#f.publishTimestamp; }
  /** The producer's event time, 0 if it set none. */
  getEventTimestamp(): number { return this.#f.eventTimestamp; }
  /** How many times the message was delivered before (0 the first time). */
  getRedeliveryCount(): number { return this.#f.redeliveryCount; }
  getPartitionKey(): string { return this.#f.partitionKey; }
  getOrderingKey(): string { return this.#f.orderingKey; }
  getProducerName(): string { return this.#f.producerName; }
  /** The producer's sequence id (Strata extension; pulsar-client has no getter for it). */
  getSequenceId(): number { return this.#f.sequenceId; }
  /** Whether the message was replicated from another cluster. */
  isReplicated(): boolean { return this.#f.replicatedFrom !== ''; }
  /** The cluster the message was first published in, '' if this one. */
  getReplicatedFrom(): string { return this.#f.replicatedFrom; }
  /** Strata has no end-to-end encryption: always null. */
  getEncryptionContext(): null { return null; }

  /** @internal payload size, for batch limits. */
  get size(): number { return this.#f.size; }
}
