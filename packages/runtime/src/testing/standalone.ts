import { join } from 'node:path';
import { SERVER_NODE_FLAGS } from '../node-flags.js';
import { freePorts, tempDir } from './ports.js';
import { ChildProcessHandle } from './process.js';
import { strataBin } from './roles.js';

/**
 * A real `strata standalone` process (coordinator, broker and two bookies writing with fsync) on free
 * ports and its own temp dir. `kill()` is SIGKILL; `restart()` starts it again on the same ports and
 * data, as a crash recovery would.
 */
export class StandaloneProcess {
  private proc: ChildProcessHandle | undefined;

  private constructor(
    private readonly args: string[],
    private readonly dir: { path: string; remove(): Promise<void> },
    readonly address: string,
    /** host:port of the broker's HTTP port (admin REST, lookups, metrics). */
    readonly webAddress: string,
  ) {}

  /** `args`: more `strata standalone` flags (e.g. the authentication ones). */
  static async start(options: { logLevel?: string; args?: readonly string[] } = {}): Promise<StandaloneProcess> {
    const dir = await tempDir('strata-standalone-');
    const [broker, brokerHttp, b1, b2, b1Http, b2Http, coord, coordHttp] = (await freePorts(8)).map(String) as [string, string, string, string, string, string, string, string];
    const args = [
      ...SERVER_NODE_FLAGS, strataBin(), 'standalone', '--data-dir', join(dir.path, 'data'), '--host', '127.0.0.1', '--log-level', options.logLevel ?? 'warn',
      '--broker-port', broker, '--broker-http-port', brokerHttp, '--bookie-ports', `${b1},${b2}`, '--bookie-http-ports', `${b1Http},${b2Http}`,
      '--coordinator-port', coord, '--coordinator-http-port', coordHttp, ...(options.args ?? []),
    ];
    const standalone = new StandaloneProcess(args, dir, `127.0.0.1:${broker}`, `127.0.0.1:${brokerHttp}`);
    try {
      await standalone.restart();
    } catch (err) {
      await dir.remove();
      throw err;
    }
    return standalone;
  }

  get serviceUrl(): string {
    return `pulsar://${this.address}`;
  }

  /** The tail of what the process wrote (stdout and stderr). */
  get recentOutput(): string {
    return this.proc?.recentOutput ?? '';
  }

  /** The broker's web service URL (`http://host:port`): Pulsar's admin REST API and HTTP lookups. */
  get webServiceUrl(): string {
    return `http://${this.webAddress}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Starts the process (again) and waits until it prints its service URL. */
  async restart(timeoutMs = 60_000): Promise<void> {
    if (this.proc?.isRunning) throw new Error('standalone is still running');
    const proc = ChildProcessHandle.spawn({ command: process.execPath, args: this.args });
    this.proc = proc;
    try {
      await proc.waitForOutput(/service URL:\s*\S+/, timeoutMs);
    } catch (err) {
      await proc.kill();
      throw err;
    }
  }

  /** kill -9 */
  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  /** SIGTERM (a graceful shutdown), keeping the data: restart() starts it again. */
  async terminate(): Promise<void> {
    await this.proc?.stop();
  }

  /** SIGTERM, then removes the temp dir. */
  async stop(): Promise<void> {
    await this.proc?.stop();
    if (!process.env.STRATA_KEEP_TEST_DIRS) await this.dir.remove();
  }
}
