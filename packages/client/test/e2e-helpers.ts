import { randomBytes } from 'node:crypto';
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
