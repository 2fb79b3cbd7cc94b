import * as grpc from '@grpc/grpc-js';
import { ClientError, ClientErrorCode, fromGrpcError } from './errors.js';
import type { Logger } from './logger.js';
import { createBrokerClients, type AdminClient, type BrokerClient } from './protocol.js';
import { brokerAddress } from './topic.js';

export interface BrokerConnection {
  readonly address: string;
  readonly broker: BrokerClient;
  readonly admin: AdminClient;
}

/** Redirects a lookup may follow before giving up (a loop between brokers ends here). */
const MAX_LOOKUP_REDIRECTS = 8;

/**
 * The client's connections: one gRPC channel per broker address, shared by every producer, consumer
 * and reader of the client, created on first use and closed with the client. Also the lookup logic.
 */
export class ConnectionPool {
  readonly #connections = new Map<string, BrokerConnection>();
  #serviceIndex = 0;
  #closed = false;

  constructor(
    private readonly serviceAddresses: string[],
    private readonly operationTimeoutMs: number,
    private readonly logger: Logger,
    private readonly connectionTimeoutMs = 10_000,
  ) {}

  /**
   * The connection to `address`, once its channel is connected. Fails fast with UNAVAILABLE when the
   * connection attempt fails (a dead broker refuses at once), and at the latest after
   * connectionTimeoutMs: the caller's reconnect loop then backs off and looks the topic up again,
   * instead of waiting on an address the lookup named before the broker's session expired.
   */
  async connect(address: string): Promise<BrokerConnection> {
    const waitMs = Math.min(this.connectionTimeoutMs, this.operationTimeoutMs);
    const deadline = Date.now() + waitMs;
    // Twice: a channel may still show an earlier failure; a fresh channel tries again at once.
    for (let attempt = 0; ; attempt++) {
      const conn = this.get(address);
      const state = await settledState(conn, deadline);
      if (state === grpc.connectivityState.READY) return conn;
      this.evict(conn);
      if (attempt >= 1 || state !== grpc.connectivityState.TRANSIENT_FAILURE) {
        const why = state === grpc.connectivityState.TRANSIENT_FAILURE ? 'connection failed' : `not connected within ${waitMs} ms`;
        throw new ClientError(ClientErrorCode.UNAVAILABLE, `cannot connect to broker ${conn.address}: ${why}`);
      }
    }
  }

  /** Drops a failed channel so that the next use opens a new one (calls still on it fail and retry). */
  private evict(conn: BrokerConnection): void {
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
      conn = { address: target, ...createBrokerClients(target) };
      this.#connections.set(target, conn);
      this.logger.debug({ broker: target }, 'opened broker channel');
    }
    return conn;
  }

  /** A connection to one of the service URL's hosts, rotating on each call so a dead one is skipped. */
  service(): BrokerConnection {
    const address = this.serviceAddresses[this.#serviceIndex % this.serviceAddresses.length]!;
    return this.get(address);
  }

  /** Moves on to the next service host (after a failure on the current one). */
  rotateService(): void {
    this.#serviceIndex++;
  }

  /** The address of the broker that owns `topic`, following non-authoritative answers. */
  async lookup(topic: string): Promise<string> {
    let conn = this.service();
    let authoritative = false;
    for (let i = 0; i < MAX_LOOKUP_REDIRECTS; i++) {
      let res;
      try {
        await this.connect(conn.address);
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

  async partitions(topic: string): Promise<number> {
    const conn = this.service();
    try {
      const res = await unary<{ partitions: number }>((cb, opts) => conn.broker.GetPartitionedTopicMetadata({ topic }, opts, cb), this.operationTimeoutMs);
      return res.partitions;
    } catch (err) {
      this.rotateService();
      throw err;
    }
  }

  close(): void {
    this.#closed = true;
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
