import type { MethodAccess, ServiceAccess } from '@strata/runtime';
import type { BrokerHandlers } from '../generated/strata/broker/v1/Broker.js';

/**
 * What each client-facing method needs, for the call gate (decision 0087): Pulsar's permissions.
 * Lookups need `lookup` (granted with produce or consume), streams name their topic in the open or
 * subscribe command, which the gate checks before the stream handler sees it.
 */
const onTopic = (action: MethodAccess['action']): MethodAccess<{ topic?: string }> => ({ action, resourceOf: (m) => m.topic });

export const brokerAccess: ServiceAccess<BrokerHandlers> = {
  Lookup: onTopic('lookup'),
  GetPartitionedTopicMetadata: onTopic('lookup'),
  GetLastMessageId: onTopic('consume'),
  Produce: { action: 'produce', resourceOf: (m: { open?: { topic?: string } | null }) => m.open?.topic },
  Consume: { action: 'consume', resourceOf: (m: { subscribe?: { topic?: string } | null }) => m.subscribe?.topic },
};

