import type { Clock, Logger, Random } from '@strata/runtime';
import type { BundleOwner, OwnershipView } from '../ownership/bundles.js';
import type { TopicLoad } from '../ownership/bundle-load.js';
import type { TopicStats } from '../generated/strata/broker/v1/TopicStats.js';
import { publishTimeOf } from './codec.js';
import { ConsumerBusyError, InvalidRequestError, NotFoundError, NotOwnerError, ServiceNotReadyError, TooManyRequestsError } from '../errors.js';
import { topicHash, TopicName } from '../names.js';
import { NonPersistentTopic } from './non-persistent-topic.js';
import type { BrokerMetrics } from '../metrics.js';
import type { NamespacePolicies, NamespaceResources } from '../resources/namespace-resources.js';
import type { ManagedLedgerConfig, ManagedLedgerFactory } from '../storage/index.js';
import { consumerCount, PersistentTopic, type Topic } from './topic.js';

export interface BrokerServiceOptions {
  allowAutoTopicCreation: boolean;
  maxMessageBytes: number;
  /** Topics loaded at once on this broker; loading one more fails with TOO_MANY_REQUESTS. */
  maxTopics: number;
  readAheadEntries: number;
  readMaxBytes: number;
  maxRedeliveryPositions: number;
  defaultNackDelayMs: number;
  maxDedupProducers: number;
  dedupSnapshotEntries: number;
  /** Unique per broker process: prefix of generated producer names. */
  producerNamePrefix: string;
  /** Managed ledger settings given by the broker config (namespace policies override E/W/A, retention, TTL). */
  managedLedger: Partial<ManagedLedgerConfig>;
  /** Quorums for namespaces that do not set their own. */
  defaultQuorums: { ensembleSize: number; writeQuorum: number; ackQuorum: number };
}

/**
 * The broker's topics: loads a topic on first use (after checking ownership, the namespace, and
 * partitioned-topic metadata), keeps it while loaded, closes it on unload/stop. One load per name at a
 * time: concurrent callers share the loading promise.
 */
export class BrokerService {
  private readonly topics = new Map<string, Promise<Topic>>();
  /** Topics loaded and open (for synchronous rate sums). */
  private readonly open = new Set<Topic>();
  /**
   * Topics whose close has begun but not finished, by name. A close ends by closing the topic's managed
   * ledger, so a new load of the same name must wait for it: until then the factory would hand the new
   * topic that same managed ledger, and the old topic's close would then close it under the new one
   * (every publish failing with ManagedLedgerClosedError until the topic is unloaded again).
   */
  private readonly closing = new Map<string, Promise<void>>();
  private readonly logger: Logger;
  private stopped = false;
  private draining = false;

  constructor(
    readonly factory: ManagedLedgerFactory,
    readonly resources: NamespaceResources,
    readonly ownership: OwnershipView,
    readonly options: BrokerServiceOptions,
    private readonly deps: { clock: Clock; random: Random; logger: Logger; metrics?: BrokerMetrics },
  ) {
    this.logger = deps.logger.child({ component: 'broker-service' });
  }

  /**
   * False once this broker's metadata session is lost (checked against the clock: a broker woken from
   * a pause finds out here, before it serves a command queued meanwhile); by then every topic it
   * owned is closing and its clients have been told. Client-facing commands check it first.
   */
  serving(): boolean {
    return this.ownership.checkSession?.() ?? true;
  }

  /**
   * The loaded topic, loading it if needed. `create`: allow creating a persistent topic that does not
   * exist (producers and consumers do, subject to allowAutoTopicCreation; admin lookups do not);
   * `'explicit'`: an admin's create, allowed whatever allowAutoTopicCreation says.
   */
  async getTopic(name: TopicName, options: { create: boolean | 'explicit' }): Promise<Topic> {
    if (this.stopped) throw new ServiceNotReadyError('broker is stopping');
    if (!this.serving()) throw new ServiceNotReadyError('this broker lost its metadata session; look the topic up again');
    const key = name.toString();
    const loaded = this.topics.get(key);
    if (loaded) {
      const t = await loaded;
      if (!t.closedSignal.aborted) return t;
      if (this.topics.get(key) === loaded) this.topics.delete(key);
      return this.getTopic(name, options);
    }
    if (this.topics.size >= this.options.maxTopics) throw new TooManyRequestsError(`this broker already serves ${this.topics.size} topics`);
    const loading = this.load(name, options.create);
    this.topics.set(key, loading);
    try {
      const topic = await loading;
      const forget = () => {
        this.open.delete(topic);
        if (this.topics.get(key) === loading) this.topics.delete(key);
        // Runs inside the topic's close (its signal aborts first): close() returns that same close
        // once the current call has returned, hence the microtask.
        const closed = Promise.resolve().then(() => topic.close('closed')).catch(() => undefined);
        this.closing.set(key, closed);
        void closed.then(() => {
          if (this.closing.get(key) === closed) this.closing.delete(key);
        });
      };
      if (topic.closedSignal.aborted) forget();
      else {
        this.open.add(topic);
        topic.closedSignal.addEventListener('abort', forget, { once: true });
      }
      return topic;
    } catch (err) {
      if (this.topics.get(key) === loading) this.topics.delete(key);
      throw err;
    }
  }

  /** The loaded topic or undefined (does not load). */
  async loadedTopic(name: TopicName): Promise<Topic | undefined> {
    const p = this.topics.get(name.toString());
    if (!p) return undefined;
    try {
      const t = await p;
      return t.closedSignal.aborted ? undefined : t;
    } catch {
      return undefined;
    }
  }

  get loadedTopicCount(): number {
    return this.topics.size;
  }

  loadedTopicNames(): string[] {
    return [...this.topics.keys()];
  }

  /** Partitions of a partitioned topic, 0 for a plain topic. */
  async partitions(name: TopicName): Promise<number> {
    await this.resources.getPolicies(name.namespaceName);
    return this.resources.getPartitions(name);
  }

  /** Deletes a topic (loaded or not). Without `force` a topic with connected clients is refused. */
  async deleteTopic(name: TopicName, force: boolean): Promise<void> {
    const loaded = await this.loadedTopic(name);
    if (loaded) {
      if (loaded.hasClients() && !force) throw new ConsumerBusyError(`topic ${name} has connected producers or consumers`);
      await loaded.delete();
      this.topics.delete(name.toString());
      return;
    }
    if (!name.isPersistent) throw new NotFoundError(`topic ${name}`);
    if (!(await this.factory.exists(name.path))) throw new NotFoundError(`topic ${name}`);
    await this.factory.delete(name.path);
  }

  /** Pushes new namespace policies to loaded topics of that namespace. */
  async applyPolicies(namespace: string, policies: NamespacePolicies): Promise<void> {
    for (const [key, p] of this.topics) {
      const name = TopicName.parse(key);
      if (name.namespaceName !== namespace) continue;
      const t = await p.catch(() => undefined);
      if (t instanceof PersistentTopic) await t.applyPolicies(policies);
    }
  }

  /**
   * Unloads the loaded topics `filter` selects (e.g. those of a bundle being released): their streams
   * get Closed with `redirectBrokerUrl` when given, storage is closed (not deleted). Returns how many.
   * The ownership layer calls this before releasing a bundle, so clients reconnect without a lookup.
   */
  async unloadTopics(filter: (topic: TopicName) => boolean, options: { reason: string; redirectBrokerUrl?: string }): Promise<number> {
    const chosen = [...this.topics.entries()].filter(([key]) => filter(TopicName.parse(key)));
    await Promise.all(chosen.map(async ([key, p]) => {
      if (this.topics.get(key) === p) this.topics.delete(key);
      const t = await p.catch(() => undefined);
      await t?.close(options.reason, { redirectBrokerUrl: options.redirectBrokerUrl });
    }));
    if (chosen.length > 0) this.logger.info({ topics: chosen.length, reason: options.reason }, 'topics unloaded');
    return chosen.length;
  }

  /** Stats and consumer count of every open topic (what the per-topic metrics report). */
  topicSamples(): Array<{ stats: TopicStats; consumers: number }> {
    return [...this.open].map((t) => {
      const stats = t.stats('');
      return { stats, consumers: consumerCount(stats) };
    });
  }

  /**
   * Message rates summed over the open topics, and each open topic's load (the load report's input:
   * the ownership layer sums `topics` per owned bundle, for the leader's hot-bundle splitting).
   */
  rates(): { msgRateIn: number; msgRateOut: number; topics: TopicLoad[] } {
    let msgRateIn = 0;
    let msgRateOut = 0;
    const topics: TopicLoad[] = [];
    for (const t of this.open) {
      const s = t.stats('');
      const load: TopicLoad = {
        namespace: t.name.namespaceName, hash: topicHash(t.name),
        producers: s.publishers?.length ?? 0, consumers: consumerCount(s),
        msgRateIn: Number(s.msgRateIn ?? 0), msgRateOut: Number(s.msgRateOut ?? 0),
        msgThroughputIn: Number(s.msgThroughputIn ?? 0), msgThroughputOut: Number(s.msgThroughputOut ?? 0),
      };
      msgRateIn += load.msgRateIn;
      msgRateOut += load.msgRateOut;
      topics.push(load);
    }
    return { msgRateIn, msgRateOut, topics };
  }

  /**
   * Graceful unload of a bundle's topics (the ownership layer calls it before releasing the bundle):
   * stop accepting, finish in-flight writes, close ledgers, and tell clients `target` in Closed.
   * `end` is exclusive except for the last bundle (0xffffffff inclusive).
   */
  async unloadBundle(bundle: { namespace: string; start: number; end: number }, target: BundleOwner | undefined): Promise<void> {
    await this.unloadTopics((name) => {
      if (name.namespaceName !== bundle.namespace) return false;
      const h = topicHash(name);
      return h >= bundle.start && (h < bundle.end || (bundle.end === 0xffffffff && h === 0xffffffff));
    }, { reason: this.draining ? 'broker stopping: bundle handed over' : 'bundle unloaded', redirectBrokerUrl: target?.url });
  }

  /** The broker is shutting down: bundles unloaded from now on are handed over because of it (the Closed reason says so). */
  beginDrain(): void {
    this.draining = true;
  }

  /** Closes every loaded topic (their streams get Closed). */
  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.topics.values()];
    this.topics.clear();
    await Promise.all(all.map(async (p) => {
      const t = await p.catch(() => undefined);
      await t?.close('broker stopping');
    }));
  }

  private async load(name: TopicName, create: boolean | 'explicit'): Promise<Topic> {
    const owner = await this.ownership.ownerOf(name);
    if (!owner) {
      await this.resources.getPolicies(name.namespaceName); // NOT_FOUND for a namespace that does not exist
      throw new ServiceNotReadyError(`no broker owns the bundle of ${name} yet; retry`);
    }
    // Ownership first: a client of a topic this broker no longer owns is sent on at once, not held
    // while the old copy's close waits on the metadata store.
    if (!owner.isMine) throw new NotOwnerError(name.toString());
    await this.closing.get(name.toString());
    const bundleSignal = this.ownership.topicSignal ? await this.ownership.topicSignal(name) : undefined;
    if (this.ownership.topicSignal && !bundleSignal) throw new NotOwnerError(name.toString());
    const topic = await this.loadOwned(name, create);
    if (bundleSignal) {
      // The topic lives as long as this broker owns its bundle: `lost` closes it at once (appends are
      // refused synchronously by close), `released` is a graceful unload with the new owner's address.
      const onEnd = () => {
        const r = bundleSignal.reason as { kind?: string; target?: BundleOwner } | undefined;
        const reason = r?.kind === 'released' ? 'bundle unloaded' : 'bundle ownership lost';
        void topic.close(reason, { redirectBrokerUrl: r?.target?.url }).catch((err: unknown) => this.logger.warn({ err, topic: name.toString() }, 'topic close failed'));
      };
      if (bundleSignal.aborted) onEnd();
      else {
        bundleSignal.addEventListener('abort', onEnd, { once: true });
        topic.closedSignal.addEventListener('abort', () => bundleSignal.removeEventListener('abort', onEnd), { once: true });
      }
    }
    return topic;
  }

  private async loadOwned(name: TopicName, create: boolean | 'explicit'): Promise<Topic> {
    const policies = await this.resources.getPolicies(name.namespaceName);
    if (!name.isPartition && (await this.resources.getPartitions(name)) > 0) {
      throw new InvalidRequestError(`${name} is a partitioned topic: use its partitions (${name}-partition-N)`);
    }
    if (name.isPartition) {
      const partitions = await this.resources.getPartitions(name.partitionedTopic);
      if (partitions > 0 && name.partitionIndex >= partitions) {
        throw new NotFoundError(`partition ${name.partitionIndex} of ${name.partitionedTopic} (it has ${partitions})`);
      }
      // A partition of an existing partitioned topic may always be created.
      if (partitions > 0 && !create) create = true;
    }
    const common = {
      maxMessageBytes: this.options.maxMessageBytes, producerNamePrefix: this.options.producerNamePrefix, clock: this.deps.clock,
      logger: this.deps.logger, metrics: this.deps.metrics,
    };
    if (!name.isPersistent) {
      if (!create && !this.options.allowAutoTopicCreation) throw new NotFoundError(`topic ${name}`);
      this.logger.info({ topic: name.toString() }, 'non-persistent topic loaded');
      return new NonPersistentTopic(name, common);
    }
    const mayCreate = create === 'explicit' || (create && this.options.allowAutoTopicCreation);
    if (!mayCreate && !(await this.factory.exists(name.path))) throw new NotFoundError(`topic ${name}`);
    const ml = await this.factory.open(name.path, { config: this.ledgerConfig(policies), createIfMissing: true });
    const topic = new PersistentTopic(name, ml, policies, {
      ...common, random: this.deps.random,
      readAheadEntries: this.options.readAheadEntries, readMaxBytes: this.options.readMaxBytes,
      maxRedeliveryPositions: this.options.maxRedeliveryPositions, defaultNackDelayMs: this.options.defaultNackDelayMs,
      maxDedupProducers: this.options.maxDedupProducers, dedupSnapshotEntries: this.options.dedupSnapshotEntries,
    });
    try {
      await topic.init();
    } catch (err) {
      await topic.close('load failed');
      throw err;
    }
    this.logger.info({ topic: name.toString(), lastConfirmed: ml.lastConfirmed }, 'topic loaded');
    return topic;
  }

  private ledgerConfig(p: NamespacePolicies): Partial<ManagedLedgerConfig> {
    return {
      ...this.options.managedLedger,
      ...(p.ensembleSize > 0 ? { ensembleSize: p.ensembleSize, writeQuorum: p.writeQuorum, ackQuorum: p.ackQuorum } : this.options.defaultQuorums),
      retentionTimeMs: p.retentionTimeMinutes < 0 ? -1 : p.retentionTimeMinutes * 60_000,
      retentionSizeBytes: p.retentionSizeMb < 0 ? -1 : p.retentionSizeMb * 1024 * 1024,
      ttlMs: p.messageTtlSeconds * 1000,
      entryTimeMs: publishTimeOf,
    };
  }
}
