import type { Logger } from '@strata/runtime';
import { ServiceNotReadyError } from '../errors.js';
import type { BrokerHandlers } from '../generated/strata/broker/v1/Broker.js';
import { unary } from '../grpc-unary.js';
import type { BrokerMetrics } from '../metrics.js';
import { TopicName } from '../names.js';
import type { BrokerService } from '../topics/broker-service.js';
import { handleConsume } from './consumer-stream.js';
import { handleProduce, type PublishLimiter } from './producer-stream.js';

/** What the client-facing Broker service needs. */
export interface BrokerHandlersContext {
  service: BrokerService;
  limiter: PublishLimiter;
  maxPendingPerProducer: number;
  maxMessageBytes: number;
  logger: Logger;
  metrics?: BrokerMetrics;
}

export function brokerHandlers(ctx: BrokerHandlersContext): BrokerHandlers {
  const { service, logger } = ctx;
  return {
    Lookup: unary(logger, 'Lookup', async (req) => {
      const name = TopicName.parse(req.topic);
      const owner = await service.ownership.ownerOf(name);
      if (!owner) {
        await service.resources.getPolicies(name.namespaceName); // NOT_FOUND for a namespace that does not exist
        throw new ServiceNotReadyError(`no broker owns the bundle of ${name} yet; retry`);
      }
      return { brokerUrl: owner.url, authoritative: true };
    }),
    GetPartitionedTopicMetadata: unary(logger, 'GetPartitionedTopicMetadata', async (req) => {
      return { partitions: await service.partitions(TopicName.parse(req.topic)) };
    }),
    GetLastMessageId: unary(logger, 'GetLastMessageId', async (req) => {
      const topic = await service.getTopic(TopicName.parse(req.topic), { create: false });
      return { messageId: topic.lastMessageId() };
    }),
    Produce: (call) => handleProduce(call, { ...ctx }),
    Consume: (call) => handleConsume(call, { service, logger, maxIdsPerCommand: 10_000 }),
  };
}
