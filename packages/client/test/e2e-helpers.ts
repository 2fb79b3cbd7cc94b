import { randomBytes } from 'node:crypto';
import { StandaloneProcess } from '@strata/runtime/testing';
import { afterAll, beforeAll } from 'vitest';
import { Client, type Message } from '../src/index.js';
import { createBrokerClients } from '../src/protocol.js';

export const unique = (prefix = 'e2e'): string => `${prefix}-${randomBytes(4).toString('hex')}`;

/** Creates a partitioned topic through the broker's Admin service (the SDK has no admin API). */
export async function createPartitionedTopic(address: string, topic: string, partitions: number): Promise<void> {
  const { admin, broker } = createBrokerClients(address);
  try {
    await new Promise<void>((resolve, reject) => admin.CreatePartitionedTopic({ topic, partitions }, (err) => (err ? reject(err) : resolve())));
  } finally {
    broker.close();
  }
}

/** Creates a namespace with deduplication on, through the Admin service. */
export async function createDedupNamespace(address: string, namespace: string): Promise<void> {
  const { admin, broker } = createBrokerClients(address);
  try {
    await new Promise<void>((resolve, reject) => admin.CreateNamespace(
      { namespace, bundles: 0, policies: { deduplicationEnabled: true } },
      (err) => (err ? reject(err) : resolve()),
    ));
  } finally {
    broker.close();
  }
}

/**
 * A real `strata standalone` process and a client on it, for one test file: started in beforeAll,
 * stopped in afterAll. Read the fields inside tests (they are set once beforeAll ran).
 */
export function useStandalone(): { standalone: StandaloneProcess; client: Client } {
  const env = {} as { standalone: StandaloneProcess; client: Client };
  beforeAll(async () => {
    env.standalone = await StandaloneProcess.start();
    env.client = new Client({ serviceUrl: env.standalone.serviceUrl, operationTimeoutSeconds: 10 });
  }, 90_000);
  afterAll(async () => {
    await env.client?.close();
    await env.standalone?.stop();
  });
  return env;
}

/** Takes messages until `next` times out (pulsar-client's TimeOut error). */
export async function takeUntilTimeout(next: (timeoutMs: number) => Promise<Message>, timeoutMs = 300): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    try {
      out.push(await next(timeoutMs));
    } catch (err) {
      if (/TimeOut/.test(String(err))) return out;
      throw err;
    }
  }
}
