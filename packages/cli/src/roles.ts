import { bookieConfigSpec, startBookie } from '@strata/bookie';
import { brokerConfigSpec, startBroker } from '@strata/broker';
import { coordinatorConfigSpec, startCoordinator } from '@strata/coordinator';
import type { ConfigSpec, Logger } from '@strata/runtime';
import type { MetadataStore } from '@strata/coordinator';

/** What every server role's composition root offers (packages/<role>/src/main.ts). */
export interface RunningRole {
  readonly grpcPort: number;
  readonly httpPort: number;
  stop(): Promise<void>;
}

export interface RoleDeps {
  logger: Logger;
  metadata?: MetadataStore;
}

export interface Role {
  readonly name: string;
  readonly summary: string;
  readonly spec: ConfigSpec;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each role takes its own compiled config
  start(config: any, deps: RoleDeps): Promise<RunningRole>;
}

export const roles: readonly Role[] = [
  { name: 'broker', summary: 'serve topics to clients (stateless; data lives on bookies)', spec: brokerConfigSpec, start: startBroker },
  { name: 'bookie', summary: 'store ledgers on local disk (append-only, fsynced, fenced)', spec: bookieConfigSpec, start: startBookie },
  { name: 'coordinator', summary: 'elect a leader and run cluster duties (assignment, auto-recovery)', spec: coordinatorConfigSpec, start: startCoordinator },
];
