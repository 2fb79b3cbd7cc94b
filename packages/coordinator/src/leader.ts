import { backoffMs, sleep, type Logger } from '@strata/runtime';
import { Counter, Registry } from 'prom-client';
import type { MetadataStore, Session } from './metadata/store.js';

/** What a leader duty gets: the store, the session leadership is held on, and a signal for its end. */
export interface LeaderContext {
  readonly store: MetadataStore;
  readonly session: Session;
  /** Aborts when leadership ends (lost, resigned, or the coordinator stops). */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  /** The coordinator's metrics registry: a duty registers its metrics once and keeps them across terms. */
  readonly metrics: Registry;
}

/**
 * A duty's counter on `LeaderContext.metrics`: registered by the first term that asks for it, the same
 * one for every later term (a registry refuses a second metric of one name).
 */
export function dutyCounter<L extends string = never>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter<L>({ name, help, labelNames, registers: [registry] });
}

/**
 * Work only the leading coordinator does (bundle assignment, auto-recovery, ...). `run` starts when
 * leadership is won and must return soon after `signal` aborts; it handles its own retries. If it
 * throws, the error is logged and counted, and the duty is not restarted before the next term.
 */
export interface LeaderDuty {
  readonly name: string;
  run(context: LeaderContext): Promise<void>;
}

export interface LeaderElectorOptions {
  store: MetadataStore;
  /** The election's name (the key is `elections/<election>`). */
  election: string;
  candidate: string;
  sessionTtlMs: number;
  duties: readonly LeaderDuty[];
  logger: Logger;
  /** Where duties register their metrics (default: a registry nobody scrapes). */
  metrics?: Registry;
  /** Called when this node gains or loses its session (ready) and leadership. */
  onChange?(state: { connected: boolean; leader: boolean }): void;
  onDutyError?(duty: string, err: unknown): void;
}

/**
 * Keeps a session and campaigns on it, forever: while leading it runs the duties; when the session
 * is lost it drops leadership at once (the session rule guarantees before anyone else can lead),
 * then makes a new session and campaigns again, with bounded backoff.
 */
export class LeaderElector {
  private readonly stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private state = { connected: false, leader: false };
  private readonly logger: Logger;
  private readonly metrics: Registry;

  constructor(private readonly options: LeaderElectorOptions) {
    this.logger = options.logger.child({ component: 'leader-elector', election: options.election, candidate: options.candidate });
    this.metrics = options.metrics ?? new Registry();
  }

  get connected(): boolean {
    return this.state.connected;
  }

  get leader(): boolean {
    return this.state.leader;
  }

  start(): void {
    this.loop ??= this.run().catch((err) => this.logger.error({ err }, 'leader election loop ended unexpectedly'));
  }

  async stop(): Promise<void> {
    this.stopController.abort(new Error('stopping'));
    await this.loop;
  }

  private set(next: Partial<{ connected: boolean; leader: boolean }>): void {
    const state = { ...this.state, ...next };
    if (state.connected === this.state.connected && state.leader === this.state.leader) return;
    this.state = state;
    this.options.onChange?.(state);
  }

  private async run(): Promise<void> {
    const stop = this.stopController.signal;
    let attempt = 0;
    while (!stop.aborted) {
      let session: Session | undefined;
      try {
        session = await this.options.store.createSession({ ttlMs: this.options.sessionTtlMs });
        attempt = 0;
        this.set({ connected: true });
        this.logger.info({ sessionId: session.id }, 'session started; campaigning');
        await this.campaignWhileAlive(session, stop);
      } catch (err) {
        if (!stop.aborted) this.logger.warn({ err }, 'session or campaign failed; starting over');
      } finally {
        this.set({ leader: false, connected: false });
        await session?.close().catch((err) => this.logger.debug({ err }, 'closing the session failed'));
      }
      if (!stop.aborted) await sleep(backoffMs(attempt++, { initialMs: 200, maxMs: 5_000 }), stop).catch(() => undefined);
    }
  }

  private async campaignWhileAlive(session: Session, stop: AbortSignal): Promise<void> {
    const { store, election, candidate } = this.options;
    while (!stop.aborted && session.isAlive()) {
      const leadership = await store.campaign(election, candidate, { session, signal: AbortSignal.any([stop, session.signal]) });
      const term = AbortSignal.any([leadership.signal, stop]);
      this.set({ leader: true });
      const context: LeaderContext = { store, session, signal: term, logger: this.logger, metrics: this.metrics };
      const duties = this.options.duties.map((duty) =>
        duty.run(context).catch((err) => {
          this.logger.error({ err, duty: duty.name }, 'leader duty failed');
          this.options.onDutyError?.(duty.name, err);
        }),
      );
      await new Promise<void>((resolve) => {
        if (term.aborted) resolve();
        else term.addEventListener('abort', () => resolve(), { once: true });
      });
      this.set({ leader: false });
      this.logger.info({ reason: String(term.reason) }, 'leadership ended');
      await Promise.all(duties);
      if (stop.aborted) await leadership.resign().catch((err) => this.logger.warn({ err }, 'resign failed'));
    }
  }
}
