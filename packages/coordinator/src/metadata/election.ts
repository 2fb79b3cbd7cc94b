import { backoffMs, sleep, type Logger } from '@strata/runtime';
import { BadVersionError, MetadataUnavailableError, SessionLostError } from '../errors.js';
import type { CampaignOptions, Leadership, MetadataStore, Session, Watcher } from './store.js';

/** Where an election's leader key lives, relative to the store root (docs/metadata.md). */
export function electionKey(election: string): string {
  return `elections/${election}`;
}

/**
 * First-come leader election over the store's own primitives, shared by both implementations:
 * the leader is whoever created `elections/<election>` (create-if-absent, bound to its session);
 * the others watch that key and try again when it is deleted (resigned, or its session ended).
 */
export async function campaign(
  store: MetadataStore,
  election: string,
  candidate: string,
  options: CampaignOptions,
  logger: Logger,
): Promise<Leadership> {
  const { session, signal } = options;
  const key = electionKey(election);
  let attempt = 0;
  for (;;) {
    signal?.throwIfAborted();
    if (!session.isAlive()) throw sessionEnded(session);
    try {
      const put = await store.put(key, candidate, { expectedVersion: 0, session, signal });
      return startLeadership(store, election, candidate, session, put.revision, logger);
    } catch (err) {
      if (err instanceof BadVersionError) {
        const current = await store.get(key, { signal }).catch(() => undefined);
        // A put whose reply was lost may still have created the key for us.
        if (current && current.sessionId === session.id && current.value.toString() === candidate) {
          return startLeadership(store, election, candidate, session, current.modRevision, logger);
        }
        if (current) await waitForChange(store, key, current.modRevision + 1, session, signal);
        attempt = 0;
        continue;
      }
      if (!(err instanceof MetadataUnavailableError)) throw err;
      logger.warn({ err, election, candidate }, 'campaign: store unavailable, retrying');
      await sleep(backoffMs(attempt++, { initialMs: 100, maxMs: 2_000 }), anySignal(signal, session.signal));
    }
  }
}

function sessionEnded(session: Session): Error {
  return session.signal.reason instanceof Error ? session.signal.reason : new SessionLostError(session.id, 'session closed');
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

/** Resolves once `key` changes at or after `fromRevision` (deleted, or replaced), or rejects on abort. */
async function waitForChange(store: MetadataStore, key: string, fromRevision: number, session: Session, signal?: AbortSignal): Promise<void> {
  const stop = anySignal(signal, session.signal);
  let watcher: Watcher | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(stop.reason);
      stop.addEventListener('abort', onAbort, { once: true });
      store
        .watch(key, {
          fromRevision,
          onEvent: (e) => {
            if (e.key === key && e.type === 'delete') resolve();
          },
          // A compacted start revision means the key changed long ago: just try again.
          onError: () => resolve(),
        })
        .then((w) => {
          watcher = w;
          if (stop.aborted) void w.close();
        }, reject);
    });
  } finally {
    await watcher?.close();
  }
}

function startLeadership(
  store: MetadataStore,
  election: string,
  candidate: string,
  session: Session,
  revision: number,
  logger: Logger,
): Leadership {
  const key = electionKey(election);
  const controller = new AbortController();
  const onSessionEnd = () => controller.abort(session.signal.reason);
  session.signal.addEventListener('abort', onSessionEnd, { once: true });
  let watcher: Watcher | undefined;
  const end = (reason: unknown) => {
    if (controller.signal.aborted) return;
    session.signal.removeEventListener('abort', onSessionEnd);
    controller.abort(reason);
    void watcher?.close();
  };
  // Anyone else touching the key (an operator deleting it, a compaction) ends our leadership.
  store
    .watch(key, {
      fromRevision: revision + 1,
      onEvent: (e) => {
        if (e.key === key) end(new SessionLostError(session.id, `leader key of ${election} changed (${e.type})`));
      },
      onError: (err) => end(err),
    })
    .then(
      (w) => {
        watcher = w;
        if (controller.signal.aborted) void w.close();
      },
      (err) => {
        logger.warn({ err, election }, 'cannot watch the leader key; giving up leadership');
        end(err);
      },
    );
  if (session.signal.aborted) end(session.signal.reason);
  logger.info({ election, candidate }, 'became leader');
  return {
    election,
    candidate,
    signal: controller.signal,
    async resign() {
      if (controller.signal.aborted) return;
      end(new Error(`resigned from ${election}`));
      const current = await store.get(key);
      if (current && current.sessionId === session.id) {
        await store.delete(key, { expectedVersion: current.version }).catch((err) => {
          if (!(err instanceof BadVersionError)) throw err;
        });
      }
    },
  };
}
