/**
 * `strata consume`: receives and acknowledges messages like `pulsar-client consume`, printing each one
 * (text, raw bytes, hex dump or JSON lines). `-n 0` runs until interrupted.
 */
import { isReceiveTimeout } from './errors.js';
import type { ConsumeOptions } from './flags.js';
import type { CliIo } from './io.js';
import { sleep } from './io.js';
import { Pacer } from './pacing.js';
import type { ClientFactory, CliMessage } from './sdk.js';

const MESSAGE_BOUNDARY = '----- got message -----';
/** How long one receive() waits, so that an interrupt is noticed within that time. */
const RECEIVE_POLL_MS = 500;

export async function runConsume(o: ConsumeOptions, deps: { io: CliIo; connect: ClientFactory; signal?: AbortSignal }): Promise<{ consumed: number }> {
  const { io, signal } = deps;
  const client = deps.connect(o.serviceUrl);
  let consumed = 0;
  try {
    const consumer = await client.subscribe({
      ...(o.regex ? { topicsPattern: o.topic } : { topic: o.topic }),
      subscription: o.subscription,
      subscriptionType: o.subscriptionType,
      subscriptionInitialPosition: o.initialPosition,
      ...(o.receiverQueueSize === undefined ? {} : { receiverQueueSize: o.receiverQueueSize }),
    });
    try {
      const pacer = new Pacer(o.rate, performance.now());
      while (!signal?.aborted && (o.numMessages === 0 || consumed < o.numMessages)) {
        for (let d = pacer.delayMs(performance.now()); d > 0; d = pacer.delayMs(performance.now())) await sleep(d, signal);
        let msg: CliMessage;
        try {
          msg = await consumer.receive(RECEIVE_POLL_MS);
        } catch (err) {
          if (isReceiveTimeout(err)) continue;
          throw err;
        }
        consumed++;
        printMessage(io, o.output, msg, consumed);
        await consumer.acknowledge(msg);
      }
    } finally {
      await consumer.close();
    }
    io.err(`${consumed} messages successfully consumed`);
    return { consumed };
  } finally {
    await client.close();
  }
}

export function printMessage(io: CliIo, output: ConsumeOptions['output'], msg: CliMessage, count: number): void {
  switch (output) {
    case 'none':
      if (count % 1000 === 0) io.err(`Received ${count} messages`);
      return;
    case 'raw':
      io.write(msg.getData());
      io.write('\n');
      return;
    case 'json':
      io.out(JSON.stringify(messageJson(msg)));
      return;
    case 'hex':
      io.out(MESSAGE_BOUNDARY);
      io.out(describeMessage(msg, hexDump(msg.getData())));
      return;
    default:
      io.out(MESSAGE_BOUNDARY);
      io.out(describeMessage(msg, msg.getData().toString('utf8')));
  }
}

/** pulsar-client's one-line form: `key:[k], properties:[a=1, b=2], content:...`. */
export function describeMessage(msg: CliMessage, content: string): string {
  const key = msg.getPartitionKey();
  const props = Object.entries(msg.getProperties()).map(([k, v]) => `${k}=${v}`);
  return `key:[${key === '' ? 'null' : key}], ${props.length > 0 ? `properties:[${props.join(', ')}], ` : ''}content:${content}`;
}

export function messageJson(msg: CliMessage): Record<string, unknown> {
  const key = msg.getPartitionKey();
  return {
    topic: msg.getTopicName(),
    messageId: msg.getMessageId().toString(),
    ...(key === '' ? {} : { key }),
    properties: msg.getProperties(),
    publishTimestamp: msg.getPublishTimestamp(),
    eventTimestamp: msg.getEventTimestamp(),
    redeliveryCount: msg.getRedeliveryCount(),
    producerName: msg.getProducerName(),
    data: msg.getData().toString('utf8'),
  };
}

/** A classic hex dump: offset, 16 bytes in hex, the printable characters. */
export function hexDump(data: Buffer): string {
  const lines: string[] = [];
  for (let off = 0; off < data.length; off += 16) {
    const chunk = data.subarray(off, off + 16);
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...chunk].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}
