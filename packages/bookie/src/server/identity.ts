import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MetadataStore } from '@strata/coordinator';
import { ErrorCode, sleep, StrataError, type Clock, type Logger } from '@strata/runtime';
import { BookieIdentityError } from '../errors.js';
import { writeFileAtomic } from '../storage/fsutil.js';
import { AVAILABLE_PREFIX } from './registration.js';

/** The cookie's file name, in the data dir and (when it is another directory) in the journal dir. */
export const COOKIE_FILE = 'cookie.json';
/** `bookies/cookies/<id>`: the cookie of every bookie id that ever held data in this cluster (no session). */
export const COOKIES_PREFIX = 'bookies/cookies/';
/** `bookies/instance-id`: made once by the first bookie that starts; tells one metadata store from another. */
export const INSTANCE_ID_KEY = 'bookies/instance-id';

/**
 * A bookie's identity, stored with its data (decision 0088). The same JSON sits in `<dataDir>/cookie.json`
 * (and `<journalDir>/cookie.json`) and at `bookies/cookies/<bookieId>` in metadata.
 * - `bookieId` names the bookie in ledger ensembles; it never changes. The address is not part of it:
 *   that lives in the session-bound registration and may change at every start.
 * - `incarnation` is random, made when the data dir got its cookie: a data dir wiped (or another one
 *   mounted) under the same bookie id gets a new one, and then disagrees with the metadata record.
 * - `instanceId` is the metadata store's `bookies/instance-id` (empty while the bookie ran without
 *   metadata): a data dir pointed at another store, even one of the same cluster name, is refused
 *   before GC could delete its ledgers as "absent from metadata".
 */
export interface Cookie {
  formatVersion: 1;
  bookieId: string;
  cluster: string;
  instanceId: string;
  incarnation: string;
  createdAtMs: number;
}

export interface IdentityOptions {
  dataDir: string;
  /** The journal's directory when it is not `<dataDir>/journal` (it then gets its own copy of the cookie). */
  journalDir?: string;
  cluster: string;
  /** `--bookie-id`: empty to keep the cookie's (or, for a new data dir, to generate one). */
  configuredId: string;
  /**
   * The address this bookie will register, when known before binding (advertised address, or a fixed
   * gRPC port). A data dir from before cookies adopts it as its id: that is what it was registered as.
   */
  expectedAddress: string | undefined;
  metadata: MetadataStore | undefined;
  /** How long an earlier process's registration can outlive it (its session TTL). */
  sessionTtlMs: number;
  logger: Logger;
  clock: Clock;
  /** Random hex of `bytes` bytes (ids, incarnations); injected so tests can fix it. */
  randomHex?: (bytes: number) => string;
}

export interface Identity {
  bookieId: string;
  cookie: Cookie;
  /** How the identity came about at this start, for the start-up log line. */
  origin: 'cookie' | 'new' | 'adopted-address';
}

/**
 * Finds out who this bookie is, before its storage opens any file, and refuses to start (a
 * BookieIdentityError, code CONFIG: exit 2 with one line saying what to do) when the data dir and the
 * metadata disagree. Writes the cookie on first start (new data dir, or one from before cookies), local
 * files first and then the metadata record, so a crash in between is repaired by the next start.
 */
export async function establishIdentity(options: IdentityOptions): Promise<Identity> {
  const log = options.logger.child({ component: 'identity' });
  const randomHex = options.randomHex ?? ((n: number) => randomBytes(n).toString('hex'));
  const dataCookiePath = join(options.dataDir, COOKIE_FILE);
  const journalCookiePath = options.journalDir ? join(options.journalDir, COOKIE_FILE) : undefined;
  const dataCookie = await readCookie(dataCookiePath);
  const journalCookie = journalCookiePath ? await readCookie(journalCookiePath) : undefined;
  let local = dataCookie;
  if (journalCookiePath) {
    if (dataCookie && !journalCookie) {
      throw new BookieIdentityError(`journal dir ${options.journalDir} has no ${COOKIE_FILE} but data dir ${options.dataDir} belongs to bookie ${dataCookie.bookieId}: mount that bookie's journal disk there (if its journal is lost for good, copy ${dataCookiePath} to ${journalCookiePath})`);
    }
    if (dataCookie && journalCookie && !sameCookie(dataCookie, journalCookie)) {
      throw new BookieIdentityError(`journal dir ${options.journalDir} belongs to bookie ${journalCookie.bookieId} (incarnation ${journalCookie.incarnation}) but data dir ${options.dataDir} to ${dataCookie.bookieId} (incarnation ${dataCookie.incarnation}): mount the journal and data disks of one bookie`);
    }
    // Journal cookie only: a first start was cut between the two writes (journal first); finish it.
    local ??= journalCookie;
  }
  if (local && local.cluster !== options.cluster) {
    throw new BookieIdentityError(`data dir ${options.dataDir} belongs to cluster ${local.cluster}, not ${options.cluster}: start it with --cluster ${local.cluster}, or give this bookie another data dir`);
  }
  if (options.configuredId && local && options.configuredId !== local.bookieId) {
    throw new BookieIdentityError(`data dir ${options.dataDir} belongs to bookie ${local.bookieId} but --bookie-id is ${options.configuredId}: start it with --bookie-id ${local.bookieId} (or none), or give bookie ${options.configuredId} its own data dir`);
  }
  const hasData = await holdsData(options.dataDir, options.journalDir ?? join(options.dataDir, 'journal'));
  let origin: Identity['origin'] = 'cookie';
  let bookieId: string;
  if (local) bookieId = local.bookieId;
  else if (hasData) {
    // Made before cookies: its id was its --bookie-id or its address, and ledger ensembles name it so.
    const legacy = options.configuredId || options.expectedAddress;
    if (!legacy) {
      throw new BookieIdentityError(`data dir ${options.dataDir} holds data from before bookie cookies, when a bookie's id was its address, and --grpc-port is 0: start it once with the --grpc-port (or --advertised-address, or --bookie-id) it had, so it keeps its id`);
    }
    bookieId = legacy;
    origin = 'adopted-address';
  } else {
    bookieId = options.configuredId || `bk-${randomHex(8)}`;
    origin = 'new';
  }
  if (bookieId.includes('/') || bookieId.trim() !== bookieId || bookieId === '') {
    throw new BookieIdentityError(`bookie id ${JSON.stringify(bookieId)} is not usable in metadata keys (no '/', no spaces): choose another --bookie-id`);
  }

  let cookie: Cookie = local ?? {
    formatVersion: 1, bookieId, cluster: options.cluster, instanceId: '', incarnation: randomHex(8), createdAtMs: options.clock.now(),
  };
  let record: Cookie | undefined;
  if (options.metadata) {
    const metadata = options.metadata;
    const instanceId = await clusterInstanceId(metadata, randomHex);
    if (cookie.instanceId && cookie.instanceId !== instanceId) {
      throw new BookieIdentityError(`data dir ${options.dataDir} belongs to another metadata store of cluster ${options.cluster} (instance ${cookie.instanceId}, this one is ${instanceId}): point --metadata-url at the store this data belongs to, or give this bookie an empty data dir`);
    }
    const kv = await metadata.get(COOKIES_PREFIX + bookieId);
    record = kv ? parseCookie(kv.value.toString(), `metadata key ${COOKIES_PREFIX}${bookieId}`) : undefined;
    if (record && !local) {
      throw hasData
        ? new BookieIdentityError(`data dir ${options.dataDir} has no cookie but bookie ${bookieId} already has one in metadata (${COOKIES_PREFIX}${bookieId}, made ${new Date(record.createdAtMs).toISOString()}): another data dir holds this bookie's data; start this one with another --bookie-id or --advertised-address`)
        : new BookieIdentityError(`data dir ${options.dataDir} is empty but bookie ${bookieId} has data by metadata (${COOKIES_PREFIX}${bookieId}, made ${new Date(record.createdAtMs).toISOString()}): mount that bookie's data disk; if its data is lost for good, let auto-recovery re-replicate it and start this bookie with another --bookie-id (or delete that key)`);
    }
    if (record && !sameCookie(record, cookie)) {
      throw new BookieIdentityError(`data dir ${options.dataDir} is not the one bookie ${bookieId} registered (cookie incarnation ${cookie.incarnation}, metadata ${record.incarnation}): mount the data disk this bookie had, or give this one another --bookie-id`);
    }
    await waitOutEarlierRegistration(metadata, bookieId, options, log);
    cookie = { ...cookie, instanceId };
  }

  if (!dataCookie || !sameCookie(dataCookie, cookie) || dataCookie.instanceId !== cookie.instanceId) {
    const json = `${JSON.stringify(cookie, null, 2)}\n`;
    // The journal's copy first: a data-dir cookie without one is refused, the other way round repaired.
    if (journalCookiePath) {
      await mkdir(options.journalDir as string, { recursive: true });
      await writeFileAtomic(journalCookiePath, json);
    }
    await mkdir(options.dataDir, { recursive: true });
    await writeFileAtomic(dataCookiePath, json);
    log.info({ bookieId, origin, dataDir: options.dataDir }, 'wrote the bookie cookie');
  }
  if (options.metadata && !record) {
    try {
      await options.metadata.put(COOKIES_PREFIX + bookieId, JSON.stringify(cookie), { expectedVersion: 0 });
    } catch (err) {
      if ((err as StrataError).code !== ErrorCode.BAD_VERSION) throw err;
      throw new BookieIdentityError(`another bookie claimed id ${bookieId} at the same moment (${COOKIES_PREFIX}${bookieId}): give one of them another --bookie-id`);
    }
  }
  return { bookieId, cookie, origin };
}

function sameCookie(a: Cookie, b: Cookie): boolean {
  return a.bookieId === b.bookieId && a.cluster === b.cluster && a.incarnation === b.incarnation;
}

async function readCookie(path: string): Promise<Cookie | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseCookie(text, path);
}

function parseCookie(text: string, where: string): Cookie {
  let v: Partial<Cookie>;
  try {
    v = JSON.parse(text) as Partial<Cookie>;
  } catch {
    throw new BookieIdentityError(`${where} is not JSON: restore it (the metadata record ${COOKIES_PREFIX}<id> holds the same cookie)`);
  }
  if (v.formatVersion !== 1 || typeof v.bookieId !== 'string' || typeof v.cluster !== 'string' || typeof v.incarnation !== 'string'
    || typeof v.instanceId !== 'string' || typeof v.createdAtMs !== 'number') {
    throw new BookieIdentityError(`${where} is not a format-1 bookie cookie: restore it, or run a Strata version that reads it`);
  }
  return v as Cookie;
}

/** Whether the bookie ever started on these directories (a checkpoint, ledger files or journal files). */
async function holdsData(dataDir: string, journalDir: string): Promise<boolean> {
  const names = async (dir: string) => readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  if ((await names(dataDir)).includes('checkpoint.json')) return true;
  if ((await names(join(dataDir, 'ledgers'))).length > 0) return true;
  return (await names(journalDir)).some((n) => n.endsWith('.jnl'));
}

/** The store's instance id, made by the first bookie (create-if-absent; a loser of the race reads the winner's). */
async function clusterInstanceId(metadata: MetadataStore, randomHex: (bytes: number) => string): Promise<string> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const kv = await metadata.get(INSTANCE_ID_KEY);
    if (kv) return kv.value.toString();
    const id = randomHex(16);
    try {
      await metadata.put(INSTANCE_ID_KEY, id, { expectedVersion: 0 });
      return id;
    } catch (err) {
      if ((err as StrataError).code !== ErrorCode.BAD_VERSION) throw err;
    }
  }
  throw new StrataError(ErrorCode.INTERNAL, `${INSTANCE_ID_KEY} keeps appearing and vanishing`);
}

/**
 * A registration of this id at another address is either the previous run of this bookie (killed,
 * its session not yet expired) or another live process with the same identity. The first vanishes
 * within a session TTL; the second does not, and then this start is refused.
 */
async function waitOutEarlierRegistration(metadata: MetadataStore, bookieId: string, options: IdentityOptions, log: Logger): Promise<void> {
  const deadline = options.clock.now() + options.sessionTtlMs + 2_000;
  let logged = false;
  for (;;) {
    const kv = await metadata.get(AVAILABLE_PREFIX + bookieId);
    if (!kv) return;
    let address = '';
    try {
      address = String((JSON.parse(kv.value.toString()) as { address?: unknown }).address ?? '');
    } catch {
      // unreadable: treat as someone else's
    }
    if (options.expectedAddress && address === options.expectedAddress) return;
    if (options.clock.now() > deadline) {
      throw new BookieIdentityError(`bookie ${bookieId} is registered and alive at ${address || '?'}: another process runs with this data dir's identity (stop it, or if this data dir is a copy, give the copy an empty data dir)`);
    }
    if (!logged) {
      logged = true;
      log.warn({ bookieId, registeredAddress: address }, 'this bookie id is registered at another address; waiting for that session to expire');
    }
    await sleep(250);
  }
}
