// A hand-written fake of the broker's stream endpoints, for unit tests of one producer/consumer:
// it records what the SDK writes and lets the test answer like a broker would.
import { EventEmitter } from 'node:events';
import type { ClientContext } from '../context.js';
import { silentLogger } from '../logger.js';
import { PublishedEnds } from '../published-ends.js';

export class FakeStream extends EventEmitter {
  readonly written: Record<string, unknown>[] = [];
  cancelled = false;
  ended = false;
  write(cmd: Record<string, unknown>): boolean {
    this.written.push(cmd);
    this.emit('written', cmd);
    return true;
  }
  cancel(): void {
    this.cancelled = true;
  }
  end(): void {
    this.ended = true;
  }
  /** The broker answers. */
  answer(ev: Record<string, unknown>): void {
    this.emit('data', { ...ev, event: Object.keys(ev)[0] });
  }
  commands(kind: string): Record<string, unknown>[] {
    return this.written.filter((c) => kind in c).map((c) => c[kind] as Record<string, unknown>);
  }
}

export class FakeBroker {
  readonly produceStreams: FakeStream[] = [];
  readonly consumeStreams: FakeStream[] = [];
  lastSequenceId = -1;
  partitions = 0;
  autoOpen = true;
  lookups = 0;

  ctx: ClientContext = {
    pool: {
      lookup: async () => {
        this.lookups++;
        return 'fake:1';
      },
      get: () => ({ address: 'fake:1', broker: this.client, admin: {} }),
      connect: async () => ({ address: 'fake:1', broker: this.client, admin: {} }),
      service: () => ({ address: 'fake:1', broker: this.client, admin: {} }),
      partitions: async () => this.partitions,
      coalesce: (_key: string, fn: () => Promise<unknown>) => fn(),
      rotateService: () => {},
      close: () => {},
    } as unknown as ClientContext['pool'],
    logger: silentLogger,
    clock: { now: () => Date.now() },
    random: () => 0.5,
    operationTimeoutMs: 2000,
    initialBackoffMs: 5,
    maxBackoffMs: 20,
    published: new PublishedEnds(),
  };

  readonly client = {
    Produce: () => {
      const s = new FakeStream();
      this.produceStreams.push(s);
      s.on('written', (cmd: Record<string, unknown>) => {
        const open = cmd.open as { requestId: number; producerName: string } | undefined;
        if (open && this.autoOpen) {
          queueMicrotask(() => s.answer({ opened: { requestId: open.requestId, producerName: open.producerName || 'fake-producer', lastSequenceId: this.lastSequenceId, maxMessageSize: 5 << 20 } }));
        }
        const close = cmd.close as { requestId: number } | undefined;
        if (close) queueMicrotask(() => s.answer({ success: { requestId: close.requestId } }));
      });
      return s;
    },
    Consume: () => {
      const s = new FakeStream();
      this.consumeStreams.push(s);
      s.on('written', (cmd: Record<string, unknown>) => {
        const sub = cmd.subscribe as { requestId: number } | undefined;
        if (sub) queueMicrotask(() => s.answer({ subscribed: { requestId: sub.requestId, consumerName: 'c' } }));
        const ack = cmd.ack as { requestId: number } | undefined;
        if (ack) queueMicrotask(() => s.answer({ success: { requestId: ack.requestId } }));
        const req = (cmd.close ?? cmd.seek ?? cmd.unsubscribe) as { requestId: number } | undefined;
        if (req) queueMicrotask(() => s.answer({ success: { requestId: req.requestId } }));
      });
      return s;
    },
  };

  get producer(): FakeStream {
    return this.produceStreams[this.produceStreams.length - 1]!;
  }

  get consumer(): FakeStream {
    return this.consumeStreams[this.consumeStreams.length - 1]!;
  }
}

export async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
