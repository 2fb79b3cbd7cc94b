import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '@strata/runtime';
import type { ProtoGrpcType as AdminProto } from '../src/generated/admin.js';
import type { ProtoGrpcType as BrokerProto } from '../src/generated/broker.js';
import type { AdminClient } from '../src/generated/strata/broker/v1/Admin.js';
import type { BrokerClient } from '../src/generated/strata/broker/v1/Broker.js';
import type { ConsumerCommand } from '../src/generated/strata/broker/v1/ConsumerCommand.js';
import type { ConsumerEvent__Output } from '../src/generated/strata/broker/v1/ConsumerEvent.js';
import type { DeliveredEntry__Output } from '../src/generated/strata/broker/v1/DeliveredEntry.js';
import type { ProducerCommand } from '../src/generated/strata/broker/v1/ProducerCommand.js';
import type { ProducerEvent__Output } from '../src/generated/strata/broker/v1/ProducerEvent.js';
import type { Subscribe } from '../src/generated/strata/broker/v1/Subscribe.js';

const brokerProto = loadProtos<BrokerProto>(['strata/broker/v1/broker.proto']);
const adminProto = loadProtos<AdminProto>(['strata/broker/v1/admin.proto']);

export function brokerClient(address: string): BrokerClient {
  return new brokerProto.strata.broker.v1.Broker(address, grpc.credentials.createInsecure());
}

export function adminClient(address: string): AdminClient {
  return new adminProto.strata.broker.v1.Admin(address, grpc.credentials.createInsecure());
}

/** Calls a unary method as a promise (errors keep the gRPC status and metadata). */
export function call<Req, Res>(client: grpc.Client, method: string, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (r: Req, cb: (e: grpc.ServiceError | null, res: Res) => void) => void>)[method]!.call(
      client, req, (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

export function errorCode(err: unknown): string | undefined {
  const v = (err as grpc.ServiceError).metadata?.get('strata-error-code')?.[0];
  return typeof v === 'string' ? v : undefined;
}

/** A queue of stream events with a waiting `next()`. */
class EventQueue<T> {
  readonly items: T[] = [];
  private waiters: Array<() => void> = [];
  ended = false;

  push(item: T): void {
    this.items.push(item);
    for (const w of this.waiters.splice(0)) w();
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w();
  }

  /** The next item matching `pred` (removed from the queue), waiting up to timeoutMs. */
  async take(pred: (t: T) => boolean, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.items.findIndex(pred);
      if (i >= 0) return this.items.splice(i, 1)[0] as T;
      if (this.ended) throw new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting; have ${JSON.stringify(this.items).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

let requestId = 1;

export class TestProducer {
  readonly events = new EventQueue<ProducerEvent__Output>();
  readonly stream: grpc.ClientDuplexStream<ProducerCommand, ProducerEvent__Output>;
  name = '';
  lastSequenceId = -1;
  private seq = 0;

  constructor(client: BrokerClient) {
    this.stream = client.Produce();
    this.stream.on('data', (e: ProducerEvent__Output) => this.events.push(e));
    this.stream.on('end', () => this.events.end());
    this.stream.on('error', () => this.events.end());
  }

  async open(topic: string, options: { producerName?: string; accessMode?: string } = {}): Promise<ProducerEvent__Output> {
    const id = requestId++;
    this.stream.write({ open: { topic, producerName: options.producerName ?? '', accessMode: (options.accessMode ?? 'SHARED') as 'SHARED', requestId: id } });
    const e = await this.events.take((x) => (x.opened?.requestId === id) || (x.error?.requestId === id));
    if (e.opened) {
      this.name = e.opened.producerName;
      this.lastSequenceId = e.opened.lastSequenceId;
      this.seq = e.opened.lastSequenceId + 1;
    }
    return e;
  }

  /** Sends one batch (without waiting); returns its sequence id. */
  send(payload: string, options: { key?: string; sequenceId?: number; numMessages?: number } = {}): number {
    const sequenceId = options.sequenceId ?? this.seq++;
    this.stream.write({
      send: {
        metadata: { producerName: this.name, sequenceId, highestSequenceId: sequenceId, numMessages: options.numMessages ?? 1, batchKey: options.key ?? '' },
        batch: Buffer.from(payload),
      },
    });
    return sequenceId;
  }

  async receipt(sequenceId: number): Promise<ProducerEvent__Output> {
    return this.events.take((x) => (x.receipt?.sequenceId === sequenceId) || (x.sendError?.sequenceId === sequenceId));
  }

  async sendAndWait(payload: string, options: { key?: string; sequenceId?: number } = {}): Promise<ProducerEvent__Output> {
    return this.receipt(this.send(payload, options));
  }

  close(): void {
    this.stream.end();
  }
}

export class TestConsumer {
  readonly events = new EventQueue<ConsumerEvent__Output>();
  readonly stream: grpc.ClientDuplexStream<ConsumerCommand, ConsumerEvent__Output>;
  readonly received: DeliveredEntry__Output[] = [];

  constructor(client: BrokerClient) {
    this.stream = client.Consume();
    this.stream.on('data', (e: ConsumerEvent__Output) => {
      if (e.delivery) this.received.push(...e.delivery.entries);
      else this.events.push(e);
    });
    this.stream.on('end', () => this.events.end());
    this.stream.on('error', () => this.events.end());
  }

  async subscribe(sub: Partial<Subscribe> & { topic: string }, permits = 0): Promise<ConsumerEvent__Output> {
    const id = requestId++;
    this.stream.write({ subscribe: { subscription: 'sub', type: 'EXCLUSIVE_SUB', durable: true, initialPosition: 'EARLIEST', ...sub, requestId: id } });
    const e = await this.events.take((x) => (x.subscribed?.requestId === id) || (x.error?.requestId === id));
    if (e.subscribed && permits > 0) this.flow(permits);
    return e;
  }

  flow(permits: number): void {
    this.stream.write({ flow: { permits } });
  }

  async ack(ids: DeliveredEntry__Output[], cumulative = false): Promise<ConsumerEvent__Output> {
    const id = requestId++;
    this.stream.write({ ack: { messageIds: ids.map((e) => e.messageId!), cumulative, requestId: id } });
    return this.events.take((x) => (x.success?.requestId === id) || (x.error?.requestId === id));
  }

  nack(ids: DeliveredEntry__Output[]): void {
    this.stream.write({ nack: { messageIds: ids.map((e) => e.messageId!) } });
  }

  async request(cmd: ConsumerCommand, id: number): Promise<ConsumerEvent__Output> {
    this.stream.write(cmd);
    return this.events.take((x) => (x.success?.requestId === id) || (x.error?.requestId === id));
  }

  nextRequestId(): number {
    return requestId++;
  }

  /** Waits until `n` entries were received in total. */
  async waitFor(n: number, timeoutMs = 5000): Promise<DeliveredEntry__Output[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < n) {
      if (Date.now() > deadline) throw new Error(`received ${this.received.length} of ${n}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.received;
  }

  payloads(): string[] {
    return this.received.map((e) => Buffer.from(e.envelope!.batch).toString());
  }

  close(): void {
    this.stream.end();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let unique = 0;
export function uniqueTopic(prefix = 't'): string {
  return `persistent://public/default/${prefix}-${process.pid}-${Date.now().toString(36)}-${++unique}`;
}
