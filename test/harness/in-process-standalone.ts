// `strata standalone` in this test's process (coordinator, broker and two bookies, as startStandalone
// runs them) on free ports and a temp dir, for tests that need its ports or a call gate of their own.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startStandalone, type RunningStandalone } from '@strata/cli';
import { freePort } from '@strata/coordinator/testing';
import { silentLogger, type CallGate } from '@strata/runtime';

export interface StandalonePorts { broker: number; brokerHttp: number; coordinator: number; coordinatorHttp: number; bookies: number[]; bookieHttp: number[] }

export interface InProcessStandalone {
  readonly standalone: RunningStandalone;
  readonly ports: StandalonePorts;
  /** Stops it and removes its temp dir. */
  stop(): Promise<void>;
}

export async function startInProcessStandalone(dirPrefix: string, deps: { gate?: CallGate } = {}): Promise<InProcessStandalone> {
  const dir = mkdtempSync(join(tmpdir(), dirPrefix));
  const ports: StandalonePorts = {
    broker: await freePort(), brokerHttp: await freePort(), coordinator: await freePort(), coordinatorHttp: await freePort(),
    bookies: [await freePort(), await freePort()], bookieHttp: [await freePort(), await freePort()],
  };
  try {
    const standalone = await startStandalone({
      dataDir: dir, metadataUrl: '', cluster: 'standalone', host: '127.0.0.1', logLevel: 'error',
      brokerPort: ports.broker, brokerHttpPort: ports.brokerHttp, coordinatorPort: ports.coordinator, coordinatorHttpPort: ports.coordinatorHttp,
      bookiePorts: ports.bookies.map(String), bookieHttpPorts: ports.bookieHttp.map(String),
    }, silentLogger(), deps);
    return {
      standalone, ports,
      stop: async () => {
        await standalone.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
