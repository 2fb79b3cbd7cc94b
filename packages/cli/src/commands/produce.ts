/**
 * `strata produce`: sends the given messages (-m / -f) `-n` times, in order, like `pulsar-client produce`.
 */
import type { ProduceOptions } from './flags.js';
import type { CliIo } from './io.js';
import { sleep } from './io.js';
import { Pacer } from './pacing.js';
import type { ClientFactory, CliProducerMessage } from './sdk.js';

/** Sends in flight at once; the SDK keeps order, this only bounds memory and lets batching work. */
const IN_FLIGHT_MAX = 1000;
const PROGRESS_EVERY_MS = 2000;

export interface ProduceResult {
  produced: number;
}

export async function runProduce(o: ProduceOptions, deps: { io: CliIo; connect: ClientFactory; signal?: AbortSignal; progress: boolean }): Promise<ProduceResult> {
  const { io, signal } = deps;
  const client = deps.connect(o.serviceUrl);
  let produced = 0;
  try {
    const producer = await client.createProducer({ topic: o.topic, batchingEnabled: o.batchingEnabled, blockIfQueueFull: true });
    const total = o.payloads.length * o.numProduce;
    const pacer = new Pacer(o.rate, performance.now());
    const inFlight = new Set<Promise<unknown>>();
    let failure: unknown;
    let lastProgress = performance.now();
    const hasProperties = Object.keys(o.properties).length > 0;

    outer: for (let round = 0; round < o.numProduce; round++) {
      for (const data of o.payloads) {
        if (signal?.aborted || failure !== undefined) break outer;
        for (let d = pacer.delayMs(performance.now()); d > 0; d = pacer.delayMs(performance.now())) await sleep(d, signal);
        while (inFlight.size >= IN_FLIGHT_MAX) await Promise.race(inFlight);
        const message: CliProducerMessage = { data };
        if (o.key !== undefined) message.partitionKey = o.key;
        if (hasProperties) message.properties = o.properties;
        const p: Promise<unknown> = producer.send(message).then(
          () => { produced++; },
          (err: unknown) => { failure ??= err; },
        ).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (deps.progress && performance.now() - lastProgress >= PROGRESS_EVERY_MS) {
          lastProgress = performance.now();
          io.err(`produced ${produced}/${total}`);
        }
      }
    }
    await Promise.all(inFlight);
    if (failure === undefined) await producer.flush();
    await producer.close();
    if (failure !== undefined) throw failure;
    io.out(`${produced} messages successfully produced`);
    return { produced };
  } finally {
    await client.close();
  }
}
