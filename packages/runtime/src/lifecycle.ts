import { ErrorCode } from './errors.js';
import type { Logger } from './logger.js';

/** A part of a process with a start and a stop (BookKeeper's LifecycleComponent). */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts components in order and stops them in reverse, once. If a start fails, what already started
 * is stopped before the error is rethrown.
 */
export class Lifecycle {
  private readonly started: Component[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly logger: Logger) {}

  async start(components: Component[]): Promise<void> {
    for (const c of components) {
      try {
        await c.start();
      } catch (err) {
        // A configuration problem (e.g. a port in use) is the composition root's one line to print; here
        // it is only context.
        if ((err as { code?: unknown }).code === ErrorCode.CONFIG) this.logger.info({ err, component: c.name }, 'start failed');
        else this.logger.error({ err, component: c.name }, 'start failed');
        await this.stop();
        throw err;
      }
      this.started.push(c);
      this.logger.debug({ component: c.name }, 'started');
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop();
          this.logger.debug({ component: c.name }, 'stopped');
        } catch (err) {
          this.logger.error({ err, component: c.name }, 'stop failed');
        }
      }
    })();
    return this.stopping;
  }

  /**
   * Stops on the first SIGTERM or SIGINT, then exits; a second signal exits at once. Returns a promise
   * that settles when the process has stopped.
   */
  stopOnSignals(onStopped: (signal: NodeJS.Signals) => void = () => process.exit(0)): void {
    let received = false;
    const handler = (signal: NodeJS.Signals) => {
      if (received) process.exit(130);
      received = true;
      this.logger.info({ signal }, 'shutting down');
      void this.stop().then(() => onStopped(signal));
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  }
}
