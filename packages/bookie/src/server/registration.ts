import { statfs } from 'node:fs/promises';
import type { MetadataStore, Session } from '@strata/coordinator';
import { backoffMs, sleep, type Logger } from '@strata/runtime';

export const AVAILABLE_PREFIX = 'bookies/available/';
export const READONLY_PREFIX = 'bookies/readonly/';

export interface DiskStats {
  totalBytes: number;
  usedBytes: number;
  usage: number;
}

export async function diskStats(dir: string): Promise<DiskStats> {
  const s = await statfs(dir);
  const totalBytes = s.blocks * s.bsize;
  // Space an unprivileged writer can no longer use counts as used (root's reserve included).
  const usedBytes = totalBytes - s.bavail * s.bsize;
  return { totalBytes, usedBytes, usage: totalBytes > 0 ? usedBytes / totalBytes : 0 };
}

/** The value of `bookies/available/<id>` (and of `bookies/readonly/<id>`): JSON. */
export interface RegistrationValue {
  id: string;
  /** host:port of the gRPC service. */
  address: string;
  httpAddress: string;
  readOnly: boolean;
  diskTotalBytes: number;
  diskUsedBytes: number;
}

export interface BookieRegistrationOptions {
  metadata: MetadataStore;
  sessionTtlMs: number;
  logger: Logger;
  value: () => RegistrationValue;
}

/**
 * Keeps `bookies/available/<id>` (and, while read-only, `bookies/readonly/<id>`) in the metadata store,
 * bound to a session so that they vanish when the bookie dies. When the session is lost the keys are
 * written again on a new session, with bounded backoff, until `stop()`.
 */
export class BookieRegistration {
  private readonly logger: Logger;
  private session: Session | undefined;
  private readonly stopped = new AbortController();
  private loop: Promise<void> | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly options: BookieRegistrationOptions) {
    this.logger = options.logger.child({ component: 'registration' });
  }

  /** Registers once (so that start fails loudly if metadata is unreachable), then keeps it up. */
  async start(): Promise<void> {
    await this.register();
    this.loop = this.keepRegistered();
  }

  /** Rewrites the keys after a change (read-only flipped). */
  update(): Promise<void> {
    this.writing = this.writing.then(() => this.writeKeys()).catch((err: unknown) => {
      this.logger.warn({ err }, 'registration update failed; the next session renewal rewrites it');
    });
    return this.writing;
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.loop?.catch(() => undefined);
    await this.writing;
    const session = this.session;
    this.session = undefined;
    await session?.close().catch((err: unknown) => this.logger.warn({ err }, 'closing the registration session failed'));
  }

  private async register(): Promise<void> {
    this.session = await this.options.metadata.createSession({ ttlMs: this.options.sessionTtlMs });
    await this.writeKeys();
    this.logger.info({ bookieId: this.options.value().id, session: this.session.id }, 'registered');
  }

  private async writeKeys(): Promise<void> {
    const session = this.session;
    if (!session || !session.isAlive()) return;
    const value = this.options.value();
    const json = JSON.stringify(value);
    await this.options.metadata.put(AVAILABLE_PREFIX + value.id, json, { session });
    if (value.readOnly) await this.options.metadata.put(READONLY_PREFIX + value.id, json, { session });
    else await this.options.metadata.delete(READONLY_PREFIX + value.id);
  }

  private async keepRegistered(): Promise<void> {
    const stop = this.stopped.signal;
    while (!stop.aborted) {
      const lost = this.session?.signal;
      if (lost && !lost.aborted) {
        await new Promise<void>((resolve) => {
          const done = () => resolve();
          lost.addEventListener('abort', done, { once: true });
          stop.addEventListener('abort', done, { once: true });
        });
      }
      if (stop.aborted) return;
      this.logger.warn({ reason: String(lost?.reason ?? 'no session') }, 'registration session lost; registering again');
      for (let attempt = 0; !stop.aborted; attempt++) {
        try {
          await this.register();
          break;
        } catch (err) {
          this.logger.warn({ err, attempt }, 'registering failed; retrying');
          await sleep(backoffMs(attempt, { initialMs: 200, maxMs: 5_000 }), stop).catch(() => undefined);
        }
      }
    }
  }
}

export interface DiskMonitorOptions {
  dir: string;
  threshold: number;
  intervalMs: number;
  logger: Logger;
  /** Called when the read-only state flips (and at the first check). */
  onChange: (readOnly: boolean, stats: DiskStats) => void;
  /** Called after every check (for the usage gauge). */
  onStats?: (stats: DiskStats) => void;
  stats?: (dir: string) => Promise<DiskStats>;
}

/**
 * Watches the data directory's file system. Past `threshold` the bookie goes read-only; it becomes
 * writable again only below `threshold - 0.05` (hysteresis, so it does not flap at the line).
 */
export class DiskMonitor {
  private timer: NodeJS.Timeout | undefined;
  private readOnly = false;
  last: DiskStats = { totalBytes: 0, usedBytes: 0, usage: 0 };
  private readonly logger: Logger;

  constructor(private readonly options: DiskMonitorOptions) {
    this.logger = options.logger.child({ component: 'disk-monitor' });
  }

  async start(): Promise<void> {
    await this.check();
    const tick = () => {
      this.timer = setTimeout(() => {
        this.check()
          .catch((err: unknown) => this.logger.error({ err }, 'disk check failed'))
          .finally(() => {
            if (this.timer) tick();
          });
      }, this.options.intervalMs);
    };
    tick();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  isReadOnly(): boolean {
    return this.readOnly;
  }

  async check(): Promise<void> {
    const stats = await (this.options.stats ?? diskStats)(this.options.dir);
    this.last = stats;
    this.options.onStats?.(stats);
    const { threshold } = this.options;
    const next = this.readOnly ? stats.usage >= threshold - 0.05 : stats.usage >= threshold;
    if (next !== this.readOnly) {
      this.readOnly = next;
      this.logger.warn({ usage: stats.usage, threshold, readOnly: next }, next ? 'disk usage past threshold: read-only' : 'disk usage back under threshold: writable');
      this.options.onChange(next, stats);
    }
  }
}
