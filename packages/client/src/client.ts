import { AuthenticationToken, TokenSource, type Authentication } from './auth.js';
import { CONNECT_WAIT_MS, ConnectionPool } from './connection.js';
import type { ClientContext } from './context.js';
import { Consumer, type ConsumerConfig } from './consumer/consumer.js';
import { ClientErrorCode, configError, fromGrpcError, operationError, unsupportedOption } from './errors.js';
import { LogLevel, loggerFromHandler, type LogHandler, type Logger } from './logger.js';
import { Producer, type ProducerConfig } from './producer.js';
import { PublishedEnds } from './published-ends.js';
import { Reader, type ReaderConfig } from './reader.js';
import { fullTopicName, parseServiceUrl, parseWebServiceUrl, partitionTopicName } from './topic.js';
import { systemClock, type Clock, type Random } from './util.js';
import { WebLookup } from './web-lookup.js';

/** pulsar-client's ClientConfig, restricted to what Strata supports (others are rejected). */
export interface ClientConfig {
  /**
   * `pulsar://host:port[,host:port]` (or `strata://...`): lookups go to those brokers' client port;
   * or a web service URL `http://host:port[,host:port]`: lookups use the brokers' REST API.
   */
  serviceUrl: string;
  /** Deadline of lookups, subscribe/create and other request/answer exchanges. Default 30. */
  operationTimeoutSeconds?: number;
  /** pulsar-client's log callback. */
  log?: LogHandler;
  logLevel?: LogLevel;
  /**
   * How long one connection attempt to a broker may take before it is abandoned (ms). Default 10000.
   * A producer/consumer waits at most 2 s of it per try, then looks the topic up again (the attempt
   * goes on in the background), so an address the lookup named just before its broker died (and that
   * swallows packets) does not stall the failover (decision 0067).
   */
  connectionTimeoutMs?: number;
  /** pulsar-client's `authentication`: `new AuthenticationToken({ token })` (a JWT, or a function returning one). */
  authentication?: Authentication;
  /** Strata extension: a pino-compatible logger (the SDK is silent without one of log/logger). */
  logger?: Logger;
  /** Strata extension: reconnection backoff bounds (ms). Defaults 100 and 2000 (decision 0043). */
  initialBackoffIntervalMs?: number;
  maxBackoffIntervalMs?: number;
  /**
   * Strata extension (decision 0091): a producer whose sends, or a consumer whose stream, get no
   * answer for this long (ms) asks another broker of the service URL who owns the topic, and moves to
   * the new owner at once if ownership moved (a frozen or cut-off owner keeps its sockets open).
   * Keep it well under the brokers' session TTL. Default 1000; 0 turns the check off.
   */
  ownershipStallThresholdMs?: number;
  /** Strata extension, for tests: injected time and randomness. */
  clock?: Clock;
  random?: Random;
}

const SUPPORTED = new Set([
  'serviceUrl', 'operationTimeoutSeconds', 'log', 'logLevel', 'connectionTimeoutMs', 'logger', 'authentication',
  'initialBackoffIntervalMs', 'maxBackoffIntervalMs', 'clock', 'random', 'ownershipStallThresholdMs',
]);
const KNOWN_UNSUPPORTED: Record<string, string> = {
  serviceUrlProvider: 'Strata has no automatic cluster failover yet',
  tlsTrustCertsFilePath: 'Strata has no TLS yet',
  tlsCertificateFilePath: 'Strata has no TLS yet',
  tlsPrivateKeyFilePath: 'Strata has no TLS yet',
  tlsValidateHostname: 'Strata has no TLS yet',
  tlsAllowInsecureConnection: 'Strata has no TLS yet',
  ioThreads: 'the SDK runs on the Node.js event loop; there are no I/O threads to size',
  messageListenerThreads: 'listeners run on the Node.js event loop',
  concurrentLookupRequest: 'lookups are not throttled by the SDK',
  statsIntervalInSeconds: 'the SDK does not log periodic stats',
  listenerName: 'brokers advertise one address',
};

/**
 * pulsar-client applies these only to TLS connections and ignores them otherwise; so does Strata, with
 * a plaintext service URL (pulsar:// or http://). A TLS URL is refused until Strata has TLS.
 */
const TLS_OPTIONS: ReadonlySet<string> = new Set(['tlsTrustCertsFilePath', 'tlsCertificateFilePath', 'tlsPrivateKeyFilePath', 'tlsValidateHostname', 'tlsAllowInsecureConnection']);

let defaultLogHandler: LogHandler | undefined;

/**
 * The entry point: holds the connections (one gRPC channel per broker, shared by everything the
 * client creates) and creates producers, consumers and readers. close() closes all of them.
 */
export class Client {
  readonly #ctx: ClientContext;
  readonly #children = new Set<{ close(): Promise<unknown> }>();
  #closed = false;

  /** Sets the log callback of clients created afterwards without `log`/`logger` (as pulsar-client). */
  static setLogHandler(handler: LogHandler | null): void {
    if (handler !== null && typeof handler !== 'function') throw configError('Client log handler must be a function or null');
    defaultLogHandler = handler ?? undefined;
  }

  constructor(config: ClientConfig) {
    if (typeof config !== 'object' || config === null) throw configError('Client config must be an object');
    const c = config as unknown as Record<string, unknown>;
    if (c.serviceUrl !== undefined && c.serviceUrlProvider !== undefined) throw configError('Only one of serviceUrl or serviceUrlProvider can be configured');
    for (const key of Object.keys(c)) {
      if (c[key] === undefined || SUPPORTED.has(key)) continue;
      if (TLS_OPTIONS.has(key) && typeof c.serviceUrl === 'string' && /^(pulsar|strata|http):\/\//.test(c.serviceUrl)) continue;
      throw unsupportedOption('Client', key, KNOWN_UNSUPPORTED[key] ?? 'unknown option');
    }
    const webBases = parseWebServiceUrl(config.serviceUrl);
    const brokerHosts = webBases ? [] : parseServiceUrl(config.serviceUrl);
    const opSeconds = config.operationTimeoutSeconds ?? 30;
    if (typeof opSeconds !== 'number' || !(opSeconds > 0) || opSeconds > 3600) throw configError('operationTimeoutSeconds must be a number in (0, 3600]');
    const initialBackoffMs = config.initialBackoffIntervalMs ?? 100;
    const maxBackoffMs = config.maxBackoffIntervalMs ?? 2_000;
    if (!Number.isInteger(initialBackoffMs) || initialBackoffMs < 1 || !Number.isInteger(maxBackoffMs) || maxBackoffMs < initialBackoffMs || maxBackoffMs > 600_000) {
      throw configError('backoff intervals must be integers with 1 <= initialBackoffIntervalMs <= maxBackoffIntervalMs <= 600000');
    }
    const connectionTimeoutMs = config.connectionTimeoutMs ?? 10_000;
    if (!Number.isInteger(connectionTimeoutMs) || connectionTimeoutMs < 1 || connectionTimeoutMs > 600_000) throw configError('connectionTimeoutMs must be an integer in [1, 600000]');
    const ownershipStallThresholdMs = config.ownershipStallThresholdMs ?? 1_000;
    if (!Number.isInteger(ownershipStallThresholdMs) || ownershipStallThresholdMs < 0 || ownershipStallThresholdMs > 600_000) throw configError('ownershipStallThresholdMs must be an integer in [0, 600000]');
    if (config.log !== undefined && typeof config.log !== 'function') throw configError('log must be a function');
    if (config.logLevel !== undefined && ![0, 1, 2, 3].includes(config.logLevel)) throw configError('logLevel must be a LogLevel (0-3)');
    // Without a `log` of its own, the client follows Client.setLogHandler, also one set later (as
    // pulsar-client, whose log handler is process-wide).
    const logger = config.logger ?? (config.log
      ? loggerFromHandler(config.log, config.logLevel ?? LogLevel.INFO)
      : loggerFromHandler(() => defaultLogHandler, config.logLevel ?? LogLevel.INFO, {}, true));
    const root = logger.child({ component: 'client' });
    let token: TokenSource | undefined;
    if (config.authentication !== undefined) {
      const supplier = AuthenticationToken.supplierOf(config.authentication);
      if (!supplier) throw configError('authentication must be an AuthenticationToken (Strata supports token authentication only yet)');
      token = new TokenSource(supplier);
    }
    this.#ctx = {
      pool: new ConnectionPool(webBases ? new WebLookup(webBases, opSeconds * 1000, token) : brokerHosts, opSeconds * 1000, root, connectionTimeoutMs, CONNECT_WAIT_MS, token),
      logger,
      clock: config.clock ?? systemClock,
      random: config.random ?? Math.random,
      operationTimeoutMs: opSeconds * 1000,
      initialBackoffMs,
      maxBackoffMs,
      published: new PublishedEnds(),
      ownershipStallThresholdMs,
    };
  }

  #track<T extends { close(): Promise<unknown> }>(child: T): T {
    this.#children.add(child);
    return child;
  }

  #untrack = (child: { close(): Promise<unknown> }): void => {
    this.#children.delete(child);
  };

  #checkOpen(op: string): void {
    if (this.#closed) throw operationError(op, ClientErrorCode.ALREADY_CLOSED);
  }

  async createProducer(config: ProducerConfig): Promise<Producer> {
    this.#checkOpen('Failed to create producer');
    return this.#track(await Producer.create(this.#ctx, config, this.#untrack));
  }

  async subscribe(config: ConsumerConfig): Promise<Consumer> {
    this.#checkOpen('Failed to create consumer');
    const host = {
      createProducer: (c: ProducerConfig) => this.createProducer(c),
      subscribe: (c: ConsumerConfig) => this.subscribe(c),
      listTopics: (ns: string) => this.#listTopics(ns),
      partitions: (t: string) => this.#ctx.pool.partitions(t),
    };
    return this.#track(await Consumer.create(this.#ctx, config, host, this.#untrack));
  }

  async createReader(config: ReaderConfig): Promise<Reader> {
    this.#checkOpen('Failed to create reader');
    return this.#track(await Reader.create(this.#ctx, config, (t) => this.#ctx.pool.partitions(t), this.#untrack));
  }

  /** The partitions' topic names of a partitioned topic, or the topic itself if it has none. */
  async getPartitionsForTopic(topic: string): Promise<string[]> {
    this.#checkOpen('Failed to GetPartitionsForTopic');
    let full: string;
    try {
      full = fullTopicName(topic);
    } catch (err) {
      throw operationError('Failed to GetPartitionsForTopic', ClientErrorCode.INVALID_TOPIC_NAME, (err as Error).message, err);
    }
    try {
      const n = await this.#ctx.pool.partitions(full);
      return n === 0 ? [full] : Array.from({ length: n }, (_, i) => partitionTopicName(full, i));
    } catch (err) {
      throw fromGrpcError(err).withContext('Failed to GetPartitionsForTopic');
    }
  }

  async #listTopics(namespace: string): Promise<string[]> {
    const names = await this.#ctx.pool.listTopics(namespace);
    return names.map((n) => fullTopicName(n.includes('://') || n.split('/').length === 3 ? n : `${namespace}/${n}`));
  }

  /** Closes every producer, consumer and reader of the client, then its connections. */
  async close(): Promise<null> {
    if (this.#closed) return null;
    this.#closed = true;
    await Promise.allSettled([...this.#children].map((c) => c.close()));
    this.#ctx.pool.close();
    return null;
  }
}
