import * as grpc from '@grpc/grpc-js';
import type { TokenSource } from './auth.js';
import { ClientError, ClientErrorCode, fromGrpcError } from './errors.js';
import type { Logger } from './logger.js';
import { createBrokerClients, type AdminClient, type BrokerClient } from './protocol.js';
import { brokerAddress } from './topic.js';
import { WebLookup } from './web-lookup.js';

export interface BrokerConnection {
  readonly address: string;
  readonly broker: BrokerClient;
  readonly admin: AdminClient;
}

/** Redirects a lookup may follow before giving up (a loop between brokers ends here). */
const MAX_LOOKUP_REDIRECTS = 8;

/**
 * The longest one `connect` call waits for a channel that is still connecting (ms). After a broker
 * died the lookup may still name it (until its session ends), and its address may swallow packets
 * (a container IP): waiting the full connection timeout there would sleep through the failover. The
 * attempt itself goes on in the background up to connectionTimeoutMs; the caller looks up again.
 */
export const CONNECT_WAIT_MS = 2_000;

/**
 * The client's connections: one gRPC channel per broker address, shared by every producer, consumer
 * and reader of the client, created on first use and closed with the client. Also the lookup logic:
 * over the binary protocol through the service URL's brokers, or over a web service URL's REST API.
 */
export class ConnectionPool {
  readonly #connections = new Map<string, BrokerConnection>();
  /** When each channel not yet READY started connecting: it is given up after connectionTimeoutMs. */
  readonly #connectingSince = new Map<BrokerConnection, number>();
  #serviceIndex = 0;
  #closed = false;
  /** Requests in flight by key: concurrent identical lookups share one answer (see coalesce). */
  readonly #inFlight = new Map<string, Promise<unknown>>();
  /** The last liveness probe per broker address (`responsive`): at most one entry per broker. */
  readonly #probes = new Map<string, { settledAt: number | undefined; result: Promise<boolean> }>();
  /** Brokers lookups skip until then (`avoid`): at most one entry per broker. */
  readonly #avoidUntil = new Map<string, number>();

  readonly #serviceAddresses: readonly string[];
  readonly #web: WebLookup | undefined;

  constructor(
    service: readonly string[] | WebLookup,
    private readonly operationTimeoutMs: number,
    private readonly logger: Logger,
    private readonly connectionTimeoutMs = 10_000,
    private readonly connectWaitMs = CONNECT_WAIT_MS,
    /** The `authentication` of the client: every connection's calls carry its token. */
    private readonly token?: TokenSource,
  ) {
    this.#web = service instanceof WebLookup ? service : undefined;
    this.#serviceAddresses = service instanceof WebLookup ? [] : service;
  }

  /**
   * The connection to `address`, once its channel is connected. Fails with UNAVAILABLE (retriable):
   * - at once when the connection attempt fails (a dead broker on a live host refuses);
   * - after min(connectWaitMs, connectionTimeoutMs) while it is still connecting. The channel keeps
   *   connecting, so a later call for the same address continues that attempt rather than starting
   *   over; a channel still not connected connectionTimeoutMs after it began is dropped (the next
   *   call opens a new one). So `connectionTimeoutMs` keeps pulsar-client's meaning (how long one
   *   connection attempt may take), while no caller waits on one address longer than connectWaitMs
   *   before looking the topic up again.
   */
  async connect(address: string): Promise<BrokerConnection> {
    // Twice: a channel may still show an earlier failure; a fresh channel tries again at once.
    for (let attempt = 0; ; attempt++) {
      const conn = this.get(address);
      const now = Date.now();
      const since = this.#connectingSince.get(conn) ?? now;
      const giveUpAt = since + this.connectionTimeoutMs;
      const deadline = Math.min(now + Math.min(this.connectWaitMs, this.operationTimeoutMs), giveUpAt);
      const state = await settledState(conn, deadline);
      if (state === grpc.connectivityState.READY) {
        this.#connectingSince.delete(conn);
        return conn;
      }
      const failed = state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN;
      if (failed || Date.now() >= giveUpAt) {
        this.evict(conn);
      } else if (this.#connections.get(conn.address) === conn) {
        this.#connectingSince.set(conn, since);
      }
      if (attempt >= 1 || !failed) {
        const why = failed ? 'connection failed' : `not connected after ${Date.now() - since} ms`;
        throw new ClientError(ClientErrorCode.UNAVAILABLE, `cannot connect to broker ${conn.address}: ${why}`);
      }
    }
  }

  /** Drops a failed channel so that the next use opens a new one (calls still on it fail and retry). */
  private evict(conn: BrokerConnection): void {
    this.#connectingSince.delete(conn);
    if (this.#connections.get(conn.address) !== conn) return;
    this.#connections.delete(conn.address);
    conn.broker.close();
    this.logger.debug({ broker: conn.address }, 'dropped failed broker channel');
  }

  get(address: string): BrokerConnection {
    if (this.#closed) throw new ClientError(ClientErrorCode.ALREADY_CLOSED, 'client is closed');
    const target = brokerAddress(address);
    let conn = this.#connections.get(target);
    if (!conn) {
      conn = { address: target, ...createBrokerClients(target, this.token) };
      this.#connections.set(target, conn);
      this.logger.debug({ broker: target }, 'opened broker channel');
    }
    return conn;
  }

  /** A connection to one of the service URL's hosts, rotating on each call so a dead one is skipped. */
  service(): BrokerConnection {
    if (this.#web) throw new ClientError(ClientErrorCode.UNSUPPORTED, 'a web service URL names no broker to call directly');
    const address = this.#serviceAddresses[this.#serviceIndex % this.#serviceAddresses.length]!;
    return this.get(address);
  }

  /** Moves on to the next service host (after a failure on the current one). */
  rotateService(): void {
    this.#serviceIndex++;
  }

  /**
   * A connected channel to one of the service URL's hosts: each host is tried once (`connect`, so a
   * dead one costs at most the connect wait), moving on when one cannot be reached; the next call
   * starts at the host that worked. So one dead broker in the service URL does not cost the caller a
   * backoff, nor a request waiting out its deadline on a channel that never connects.
   */
  async serviceConnection(): Promise<BrokerConnection> {
    for (let tries = 1; ; tries++) {
      let conn = this.service();
      // A broker a stalled stream just left (`avoid`) is skipped while another host is left to try:
      // its open socket would hold the lookup until the operation timeout.
      for (let skipped = 0; this.#isAvoided(conn.address) && skipped < this.#serviceAddresses.length - 1; skipped++) {
        this.rotateService();
        conn = this.service();
      }
      try {
        return await this.connect(conn.address);
      } catch (err) {
        this.rotateService();
        if (tries >= this.#serviceAddresses.length) throw err;
      }
    }
  }

  /**
   * Runs `fn` unless a call with the same key is in flight, whose promise is shared instead: a burst
   * of producers, consumers or readers on one topic costs one lookup, not one each. Only for reads
   * whose answer is as good for every caller that asked while it was on its way.
   */
  coalesce<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const pending = this.#inFlight.get(key);
    if (pending) return pending as Promise<T>;
    const p = fn().finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, p);
    return p;
  }

  /** The address of the broker that owns `topic`, following non-authoritative answers. */
  lookup(topic: string): Promise<string> {
    return this.coalesce(`lookup:${topic}`, () => this.#lookup(topic));
  }

  async #lookup(topic: string): Promise<string> {
    if (this.#web) return this.#web.lookup(topic);
    let conn = await this.serviceConnection();
    let authoritative = false;
    for (let i = 0; i < MAX_LOOKUP_REDIRECTS; i++) {
      let res;
      try {
        if (i > 0) await this.connect(conn.address);
        res = await unary<{ brokerUrl: string; authoritative: boolean }>((cb, opts) => conn.broker.Lookup({ topic, authoritative }, opts, cb), this.operationTimeoutMs);
      } catch (err) {
        if (i === 0) this.rotateService();
        throw err;
      }
      if (!res.brokerUrl) throw new ClientError(ClientErrorCode.SERVICE_NOT_READY, `no broker owns ${topic} yet`);
      if (res.authoritative) return brokerAddress(res.brokerUrl);
      conn = this.get(res.brokerUrl);
      authoritative = true;
    }
    throw new ClientError(ClientErrorCode.SERVICE_NOT_READY, `lookup of ${topic} redirected more than ${MAX_LOOKUP_REDIRECTS} times`);
  }

  /**
   * Who owns `topic`, asked of the service hosts other than `notAt` (the broker a stalled stream is
   * on: asking it would only wait on it), each tried once, every call bounded by `timeoutMs` (and a
   * connect by the connect wait). Any broker answers from its watched view of ownership; a broker
   * without a live session refuses, and the next is asked. Undefined if none answered.
   */
  async ownerElsewhere(topic: string, notAt: string, timeoutMs: number): Promise<string | undefined> {
    if (this.#web) return this.#web.lookup(topic).catch(() => undefined);
    const excluded = brokerAddress(notAt);
    const n = this.#serviceAddresses.length;
    for (let i = 0; i < n; i++) {
      const address = brokerAddress(this.#serviceAddresses[(this.#serviceIndex + i) % n]!);
      if (address === excluded) continue;
      try {
        const conn = await this.connect(address);
        const res = await unary<{ brokerUrl: string }>((cb, opts) => conn.broker.Lookup({ topic, authoritative: false }, opts, cb), timeoutMs);
        if (res.brokerUrl) return brokerAddress(res.brokerUrl);
      } catch (err) {
        this.logger.debug({ err, broker: address, topic }, 'ownership check: lookup failed; asking the next service host');
      }
    }
    return undefined;
  }

  /**
   * Lookups through the service URL skip `address` for `ms` (while another host is left): a stream
   * found it silent while another broker owns its topic (ownership-watch.ts). Bounded by the number of
   * brokers; cleared when it answers a probe again.
   */
  avoid(address: string, ms: number): void {
    this.#avoidUntil.set(brokerAddress(address), Date.now() + ms);
  }

  #isAvoided(address: string): boolean {
    const until = this.#avoidUntil.get(brokerAddress(address));
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.#avoidUntil.delete(brokerAddress(address));
    return false;
  }

  /**
   * Whether the broker at `address` answers a request (a lookup of `topic`: any answer, an error
   * included, means it is running) within `timeoutMs`. One probe per broker at a time, its result
   * shared by every caller for `timeoutMs` after it settled, so idle streams cost one call per broker.
   */
  responsive(address: string, topic: string, timeoutMs: number): Promise<boolean> {
    const target = brokerAddress(address);
    const now = Date.now();
    const last = this.#probes.get(target);
    if (last && (last.settledAt === undefined || now - last.settledAt < timeoutMs)) return last.result;
    const probe: { settledAt: number | undefined; result: Promise<boolean> } = { settledAt: undefined, result: Promise.resolve(true) };
    probe.result = (async () => {
      try {
        const conn = this.get(target);
        await unary((cb, opts) => conn.broker.Lookup({ topic, authoritative: false }, opts, cb), timeoutMs);
        this.#avoidUntil.delete(target);
        return true;
      } catch (err) {
        const code = fromGrpcError(err).code;
        return code !== ClientErrorCode.TIMEOUT && code !== ClientErrorCode.UNAVAILABLE && code !== ClientErrorCode.ALREADY_CLOSED;
      } finally {
        probe.settledAt = Date.now();
      }
    })();
    this.#probes.set(target, probe);
    return probe.result;
  }

  /**
   * The topic's partition count from a service host. Retries retriable failures (no service host
   * reachable yet, a broker starting) with a short backoff until the operation timeout, as creation
   * does (decision 0043), so a client started before its brokers still gets an answer.
   */
  partitions(topic: string): Promise<number> {
    return this.coalesce(`partitions:${topic}`, () => this.#partitions(topic));
  }

  async #partitions(topic: string): Promise<number> {
    const deadline = Date.now() + this.operationTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.#web) return await this.#web.partitions(topic);
        const conn = await this.serviceConnection();
        const res = await unary<{ partitions: number }>((cb, opts) => conn.broker.GetPartitionedTopicMetadata({ topic }, opts, cb), Math.max(1, deadline - Date.now()));
        return res.partitions;
      } catch (err) {
        this.rotateService();
        const e = fromGrpcError(err);
        const waitMs = Math.min(1_000, 100 * 2 ** attempt);
        if (!e.retriable || this.#closed || Date.now() + waitMs >= deadline) throw e;
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  }

  /** The names of a namespace's topics (`tenant/ns/topic` or full names, as the broker lists them). */
  async listTopics(namespace: string): Promise<string[]> {
    if (this.#web) return this.#web.listTopics(namespace);
    const conn = await this.serviceConnection();
    const res = await unary<{ names: string[] }>((cb, opts) => conn.admin.ListTopics({ namespace, bundles: 0 }, opts, cb), this.operationTimeoutMs);
    return res.names;
  }

  close(): void {
    this.#closed = true;
    this.#connectingSince.clear();
    this.#probes.clear();
    this.#avoidUntil.clear();
    for (const conn of this.#connections.values()) conn.broker.close();
    this.#connections.clear();
  }
}

/** Runs a unary call with a deadline; errors come back as ClientError. */
export function unary<T>(
  call: (cb: (err: grpc.ServiceError | null, res?: T) => void, options: grpc.CallOptions) => unknown,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    call((err, res) => {
      if (err) reject(fromGrpcError(err));
      else resolve(res as T);
    }, { deadline: Date.now() + timeoutMs });
  });
}

/**
 * Waits until the channel is READY or has failed a connection attempt (TRANSIENT_FAILURE); returns the
 * state then, or the current state at the deadline.
 */
function settledState(conn: BrokerConnection, deadline: number): Promise<grpc.connectivityState> {
  const channel = conn.broker.getChannel();
  return new Promise((resolve) => {
    const check = () => {
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY || state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN || Date.now() >= deadline) {
        resolve(state);
        return;
      }
      channel.watchConnectivityState(state, deadline, () => check());
    };
    check();
  });
}
