/**
 * The one door to Strata's metadata (DESIGN.md "The metadata store"). Two implementations pass one
 * contract suite: `EtcdMetadataStore` (production, etcd v3) and `EmbeddedMetadataStore` (one process,
 * persisted on local disk, for `strata standalone`).
 *
 * Invariants every implementation keeps:
 * - Keys are relative to the store's root (`/strata/<cluster>/` on etcd); the store adds and strips it.
 * - Every change gets a new, strictly increasing store-wide `revision`. A key's `version` counts its
 *   changes since creation: 1 after create, +1 per put; a missing key has version 0.
 * - `expectedVersion` makes a put or delete a compare-and-swap: it succeeds only if the key's version
 *   is exactly that (0 = "must not exist"), else it throws BadVersionError and changes nothing.
 * - Watches deliver every change under a prefix exactly once and in revision order, from
 *   `fromRevision` (inclusive) on, across client reconnects and server restarts. If that revision was
 *   compacted away the watch fails with CompactedError and the caller must re-list.
 * - A session is a lease kept alive in the background. Keys put with `session` vanish when it ends
 *   (closed, or expired on the server). The holder's `session.signal` aborts *before* the server can
 *   expire the lease (keep-alive silent for longer than ttl minus a safety margin), so a holder never
 *   believes it still holds a key that another process could already have taken.
 * - Every call fails with MetadataUnavailableError (retriable) rather than hang: calls have deadlines.
 */
export interface MetadataStore {
  get(key: string, options?: CallOptions): Promise<KeyValue | undefined>;

  /** Creates or replaces a key. With `session`, the key lives only as long as that session. */
  put(key: string, value: Uint8Array | string, options?: PutOptions): Promise<PutResult>;

  /** Returns false if the key did not exist (and no expectedVersion was given). */
  delete(key: string, options?: DeleteOptions): Promise<boolean>;

  /** Keys under a prefix in key order, one page at a time. */
  list(prefix: string, options?: ListOptions): Promise<ListPage>;

  /** The store's current revision (for "watch from now" after a list). */
  currentRevision(options?: CallOptions): Promise<number>;

  /** Watches a prefix; events arrive through `onEvent` until `close()` or a fatal `onError`. */
  watch(prefix: string, options: WatchOptions): Promise<Watcher>;

  /** Starts a session (lease) kept alive until closed or lost. */
  createSession(options: SessionOptions): Promise<Session>;

  /**
   * Ends any session by its id (a key's `sessionId`), in this process or another: its keys vanish at
   * once, and its holder learns on its next keep-alive (its `signal` aborts with SessionLostError).
   * For a holder known to be dead (decision 0065); a live holder loses its keys before it knows, so
   * callers rely on fencing for anything it still writes. False if no such session exists.
   * Optional: stores without it cannot revoke (callers wait for expiry).
   */
  revokeSession?(sessionId: string, options?: CallOptions): Promise<boolean>;

  /**
   * Waits until `candidate` leads `election` (first come first served), holding the leadership on
   * `session`. Resolves with a Leadership whose signal aborts when leadership ends.
   */
  campaign(election: string, candidate: string, options: CampaignOptions): Promise<Leadership>;

  /** The current leader's candidate id, if any. */
  getLeader(election: string, options?: CallOptions): Promise<string | undefined>;

  /** Releases everything: watches, sessions (revoked), connections. */
  close(): Promise<void>;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface KeyValue {
  key: string;
  value: Buffer;
  version: number;
  createRevision: number;
  modRevision: number;
  /** The session the key is bound to, if any. */
  sessionId?: string;
}

export interface PutOptions extends CallOptions {
  /** Compare-and-swap: the key's current version must be exactly this (0 = must not exist). */
  expectedVersion?: number;
  /** Bind the key to this session's lifetime. */
  session?: Session;
}

export interface PutResult {
  version: number;
  revision: number;
}

export interface DeleteOptions extends CallOptions {
  expectedVersion?: number;
}

export interface ListOptions extends CallOptions {
  /** Page size; default 1000, at most 10000. */
  limit?: number;
  /** Resume after this key (the previous page's last key). */
  startAfter?: string;
}

export interface ListPage {
  items: KeyValue[];
  /** True when more keys follow; ask again with startAfter = last item's key. */
  more: boolean;
  /** The store revision the page was read at. */
  revision: number;
}

export type WatchEvent =
  | { type: 'put'; key: string; value: Buffer; version: number; modRevision: number }
  | { type: 'delete'; key: string; modRevision: number };

export interface WatchOptions {
  /** First revision to deliver; default: changes after now. */
  fromRevision?: number;
  onEvent(event: WatchEvent): void;
  /** A fatal error (e.g. CompactedError): the watch is over. Transient faults are retried inside. */
  onError?(error: Error): void;
}

export interface Watcher {
  /** The revision of the last event delivered (or the start revision - 1). */
  readonly lastRevision: number;
  close(): Promise<void>;
}

export interface SessionOptions {
  /** Lease time to live; etcd's smallest useful one is about 2000 ms. */
  ttlMs: number;
}

export interface Session {
  readonly id: string;
  readonly ttlMs: number;
  /** Aborts when the session is lost or closed; reason is a SessionLostError when lost. */
  readonly signal: AbortSignal;
  isAlive(): boolean;
  /** Revokes the lease: keys bound to it vanish at once. */
  close(): Promise<void>;
}

export interface CampaignOptions extends CallOptions {
  session: Session;
}

export interface Leadership {
  readonly election: string;
  readonly candidate: string;
  /** Aborts when leadership ends (resigned, or the session was lost). */
  readonly signal: AbortSignal;
  resign(): Promise<void>;
}
