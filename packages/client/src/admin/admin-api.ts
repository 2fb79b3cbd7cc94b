/**
 * A promise-based door to the Admin gRPC service that every broker serves on its client port
 * (protos/strata/broker/v1/admin.proto), for tools such as `strata admin`. It opens its channels with the
 * SDK's conventions (createBrokerClients: keepalives, message limits, one channel for the Broker and Admin
 * services) and turns every failure into a ClientError in the SDK's one place (fromGrpcError), so the
 * broker's stable domain code (`ALREADY_EXISTS`, `NOT_FOUND`, ...) reaches the caller unchanged.
 */
import * as grpc from '@grpc/grpc-js';
import { AuthenticationToken, TokenSource, type Authentication } from '../auth.js';
import { ClientError, configError, fromGrpcError } from '../errors.js';
import { createBrokerClients } from '../protocol.js';
import type { AdminClient } from '../generated/strata/broker/v1/Admin.js';
import type { BrokerClient } from '../generated/strata/broker/v1/Broker.js';
import type { BrokerInfo__Output as BrokerInfo } from '../generated/strata/broker/v1/BrokerInfo.js';
import type { BundleInfo__Output as BundleInfo } from '../generated/strata/broker/v1/BundleInfo.js';
import type { NamespacePolicies__Output as NamespacePolicies } from '../generated/strata/broker/v1/NamespacePolicies.js';
import type { TopicStats__Output as TopicStats } from '../generated/strata/broker/v1/TopicStats.js';

export type { BrokerInfo, BundleInfo, NamespacePolicies, TopicStats };

/** Deadline of one admin call unless AdminApiOptions.callTimeoutMs says otherwise. */
export const ADMIN_CALL_TIMEOUT_MS = 10_000;

export interface AdminApiOptions {
  /** Deadline of each call (default ADMIN_CALL_TIMEOUT_MS); at the deadline the call rejects with code TIMEOUT. */
  callTimeoutMs?: number;
  /** As the Client's: every call carries the token (`new AuthenticationToken({ token })`). */
  authentication?: Authentication;
}

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => unknown;

/** One broker's two stubs, sharing its channel. */
interface BrokerStubs {
  readonly target: string;
  readonly admin: AdminClient;
  readonly broker: BrokerClient;
}

/**
 * The Admin service of a cluster (any broker answers for the whole cluster). With several targets
 * (`pulsar://a,b,c`), a call that could not reach a broker at all (no connection established: the
 * request never left) is tried on the next one; an answer from a broker, even an error, is final.
 */
export class AdminApi {
  readonly #targets: readonly string[];
  readonly #stubs: Array<BrokerStubs | undefined>;
  /** The target that answered last: later calls start there. */
  #current = 0;
  readonly #callTimeoutMs: number;
  readonly #token: TokenSource | undefined;

  /**
   * `targets`: gRPC addresses (`host:port`), e.g. from `parseServiceUrl('pulsar://a:6650,b:6650')`.
   * Nothing connects until the first call.
   */
  constructor(targets: string | readonly string[], options: AdminApiOptions = {}) {
    this.#targets = typeof targets === 'string' ? [targets] : [...targets];
    if (this.#targets.length === 0) throw new RangeError('AdminApi needs at least one target');
    this.#stubs = this.#targets.map(() => undefined);
    this.#callTimeoutMs = options.callTimeoutMs ?? ADMIN_CALL_TIMEOUT_MS;
    if (!(this.#callTimeoutMs > 0)) throw new RangeError(`callTimeoutMs must be > 0, got ${this.#callTimeoutMs}`);
    const supplier = options.authentication === undefined ? undefined : AuthenticationToken.supplierOf(options.authentication);
    if (options.authentication !== undefined && !supplier) throw configError('authentication must be an AuthenticationToken');
    this.#token = supplier && new TokenSource(supplier);
  }

  #stubsAt(i: number): BrokerStubs {
    const target = this.#targets[i] as string;
    return (this.#stubs[i] ??= { target, ...createBrokerClients(target, this.#token) });
  }

  async #call<Req, Res>(pick: (s: BrokerStubs) => grpc.Client, method: string, req: Req): Promise<Res> {
    const unreachable: string[] = [];
    for (let n = 0; n < this.#targets.length; n++) {
      const i = (this.#current + n) % this.#targets.length;
      const stubs = this.#stubsAt(i);
      try {
        const res = await this.#callOne<Req, Res>(pick(stubs), stubs.target, method, req);
        this.#current = i;
        return res;
      } catch (err) {
        if (!(err instanceof Unreachable)) throw err;
        unreachable.push(`${stubs.target}${err.sys ? ` (${err.sys})` : ''}`);
      }
    }
    throw new ClientError('UNAVAILABLE', `cannot reach a broker at ${unreachable.join(', ')}`);
  }

  #callOne<Req, Res>(client: grpc.Client, target: string, method: string, req: Req): Promise<Res> {
    const fn = (client as unknown as Record<string, Unary<Req, Res>>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`admin method ${method} is missing`));
    return new Promise<Res>((resolve, reject) => {
      fn.call(client, req, { deadline: Date.now() + this.#callTimeoutMs }, (err, res) => {
        if (!err) return resolve(res as Res);
        // The transport's own text ("No connection established. Last error: ...") says little to a user;
        // and such a call never reached a broker, so another one may take it.
        if (err.code === grpc.status.UNAVAILABLE && !err.metadata?.get('strata-error-code')?.length && /No connection established/i.test(err.details ?? '')) {
          reject(new Unreachable(/\b(E[A-Z]{4,})\b/.exec(err.details ?? '')?.[1]));
        } else if (err.code === grpc.status.UNAVAILABLE && !err.metadata?.get('strata-error-code')?.length) {
          reject(new ClientError('UNAVAILABLE', `lost the connection to the broker at ${target}`, { cause: err }));
        } else {
          reject(fromGrpcError(err));
        }
      });
    });
  }

  #a<Req, Res>(method: string, req: Req): Promise<Res> {
    return this.#call((s) => s.admin as unknown as grpc.Client, method, req);
  }

  async listTenants(): Promise<string[]> {
    return (await this.#a<object, { names: string[] }>('listTenants', {})).names;
  }
  async createTenant(tenant: string, adminRoles: string[] = [], allowedClusters: string[] = []): Promise<void> {
    await this.#a('createTenant', { tenant, adminRoles, allowedClusters });
  }
  async deleteTenant(tenant: string): Promise<void> {
    await this.#a('deleteTenant', { tenant });
  }
  async listNamespaces(tenant: string): Promise<string[]> {
    return (await this.#a<object, { names: string[] }>('listNamespaces', { tenant })).names;
  }
  async createNamespace(namespace: string, bundles = 0): Promise<void> {
    await this.#a('createNamespace', { namespace, bundles });
  }
  async deleteNamespace(namespace: string): Promise<void> {
    await this.#a('deleteNamespace', { namespace });
  }
  async getPolicies(namespace: string): Promise<NamespacePolicies> {
    return this.#a('getNamespacePolicies', { namespace });
  }
  async setPolicies(namespace: string, policies: NamespacePolicies): Promise<void> {
    await this.#a('setNamespacePolicies', { namespace, policies });
  }
  async listTopics(namespace: string): Promise<string[]> {
    return (await this.#a<object, { names: string[] }>('listTopics', { namespace })).names;
  }
  async listPartitionedTopics(namespace: string): Promise<string[]> {
    return (await this.#a<object, { names: string[] }>('listPartitionedTopics', { namespace })).names;
  }
  async createPartitionedTopic(topic: string, partitions: number): Promise<void> {
    await this.#a('createPartitionedTopic', { topic, partitions });
  }
  async deletePartitionedTopic(topic: string, force: boolean): Promise<void> {
    await this.#a('deletePartitionedTopic', { topic, force });
  }
  async deleteTopic(topic: string, force: boolean): Promise<void> {
    await this.#a('deleteTopic', { topic, force });
  }
  async topicStats(topic: string): Promise<TopicStats> {
    return this.#a('getTopicStats', { topic });
  }
  async listBrokers(): Promise<BrokerInfo[]> {
    return (await this.#a<object, { brokers: BrokerInfo[] }>('listBrokers', {})).brokers;
  }
  async listBundles(namespace: string): Promise<BundleInfo[]> {
    return (await this.#a<object, { bundles: BundleInfo[] }>('listBundles', { namespace })).bundles;
  }
  async unloadBundle(namespace: string, range: string, destinationBrokerId = ''): Promise<void> {
    await this.#a('unloadBundle', { namespace, range, destinationBrokerId });
  }
  async splitBundle(namespace: string, range: string): Promise<void> {
    await this.#a('splitBundle', { namespace, range });
  }
  async lookupBundle(topic: string): Promise<BundleInfo> {
    return this.#a('lookupBundle', { topic });
  }
  /** Partitions of a topic (0 for a non-partitioned one), from the client-facing service. */
  async partitions(topic: string): Promise<number> {
    return (await this.#call<object, { partitions: number }>((s) => s.broker as unknown as grpc.Client, 'getPartitionedTopicMetadata', { topic })).partitions;
  }

  /** Closes the channels opened so far; calls made after this fail. */
  close(): void {
    for (const s of this.#stubs) s?.broker.close();
  }
}

/** A call that never reached a broker (`sys`: the socket error, e.g. ECONNREFUSED). */
class Unreachable extends Error {
  constructor(readonly sys: string | undefined) {
    super('no connection established');
  }
}
