/**
 * The part of the SDK's pulsar-client API the commands use, as structural types, and the one place the
 * commands make a Client. Keeping the surface this small lets the runners be driven by a test double
 * and keeps the commands honest: they use nothing an application could not.
 */
import { AuthenticationToken, Client } from '@strata/client';

export interface CliMessageId {
  toString(): string;
}

export interface CliMessage {
  getTopicName(): string;
  getData(): Buffer;
  getProperties(): { [key: string]: string };
  getMessageId(): CliMessageId;
  getPublishTimestamp(): number;
  getEventTimestamp(): number;
  getPartitionKey(): string;
  getRedeliveryCount(): number;
  getProducerName(): string;
}

export interface CliProducerMessage {
  data: Buffer;
  properties?: { [key: string]: string };
  partitionKey?: string;
  eventTimestamp?: number;
}

export interface CliProducer {
  send(message: CliProducerMessage): Promise<unknown>;
  flush(): Promise<unknown>;
  close(): Promise<unknown>;
}

export interface CliConsumer {
  receive(timeout?: number): Promise<CliMessage>;
  acknowledge(message: CliMessage): Promise<unknown>;
  close(): Promise<unknown>;
}

export interface CliProducerConfig {
  topic: string;
  producerName?: string;
  batchingEnabled?: boolean;
  batchingMaxPublishDelayMs?: number;
  batchingMaxMessages?: number;
  batchingMaxAllowedSizeInBytes?: number;
  maxPendingMessages?: number;
  blockIfQueueFull?: boolean;
  compressionType?: 'None' | 'LZ4' | 'Zlib' | 'ZSTD' | 'SNAPPY';
  messageRoutingMode?: 'UseSinglePartition' | 'RoundRobinDistribution' | 'CustomPartition';
}

export interface CliConsumerConfig {
  topic?: string;
  topicsPattern?: string;
  subscription: string;
  subscriptionType?: 'Exclusive' | 'Shared' | 'KeyShared' | 'Failover';
  subscriptionInitialPosition?: 'Latest' | 'Earliest';
  receiverQueueSize?: number;
  consumerName?: string;
}

export interface CliClient {
  createProducer(config: CliProducerConfig): Promise<CliProducer>;
  subscribe(config: CliConsumerConfig): Promise<CliConsumer>;
  close(): Promise<unknown>;
}

/** `auth.token`: the command's authentication token (--token, --token-file, STRATA_AUTH_TOKEN). */
export type ClientFactory = (serviceUrl: string, auth?: { token: string }) => CliClient;

/** A real SDK client. The assignment (no cast) checks that the SDK's API still fits what the CLI uses. */
export const connectClient: ClientFactory = (serviceUrl, auth) => {
  const client: CliClient = new Client({ serviceUrl, ...(auth ? { authentication: new AuthenticationToken({ token: auth.token }) } : {}) });
  return client;
};
