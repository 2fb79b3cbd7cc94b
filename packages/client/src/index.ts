import { AuthenticationToken } from './auth.js';
import { Client } from './client.js';
import { Consumer } from './consumer/consumer.js';
import { CryptoKeyReader } from './crypto-key-reader.js';
import { ClientError, ClientErrorCode } from './errors.js';
import { LogLevel } from './logger.js';
import { Message, MessageId } from './message.js';
import { Producer } from './producer.js';
import { Reader } from './reader.js';

export { Client } from './client.js';
export { AuthenticationToken } from './auth.js';
export type { Authentication, TokenSupplier } from './auth.js';
export type { ClientConfig } from './client.js';
export { Producer } from './producer.js';
export type { ProducerConfig, SendOptions, MessageRoutingMode, ProducerAccessMode, MessageRouter, TopicMetadata } from './producer.js';
export { Consumer } from './consumer/consumer.js';
export type { ConsumerConfig } from './consumer/consumer.js';
export type { ReceiveOptions } from './consumer/receiver-queue.js';
export type {
  SubscriptionType, InitialPosition, ConsumerKeyShareMode, DeadLetterPolicy, ConsumerBatchReceivePolicy, KeySharedPolicy,
  RegexSubscriptionMode,
} from './consumer/config.js';
export { CryptoKeyReader } from './crypto-key-reader.js';
export type { EncryptionKeyInfo } from './crypto-key-reader.js';
export { Reader } from './reader.js';
export type { ReaderConfig } from './reader.js';
export { Message, MessageId } from './message.js';
export type { ProducerMessage } from './message.js';
export type { CompressionType } from './compression.js';
export type { HashingScheme } from './hash.js';
export { javaStringHash, murmur3_32, partitionForKey } from './hash.js';
export { ClientError, ClientErrorCode, isClientError } from './errors.js';
export { LogLevel } from './logger.js';
export type { Logger, LogHandler } from './logger.js';

/**
 * The default export has pulsar-client's shape, so that `import Pulsar from '@strata/client'` and
 * `new Pulsar.Client({ serviceUrl })` work unchanged.
 */
const Pulsar = { Client, Producer, Consumer, Reader, Message, MessageId, LogLevel, ClientError, ClientErrorCode, CryptoKeyReader, AuthenticationToken };
export default Pulsar;
