import { autoRecoveryConfigSpec, autoRecoveryDuty, bookieConfigSpec, startBookie } from '@strata/bookie';
import { brokerConfigSpec, orphanLedgerConfigSpec, orphanSweeperDuty, startBroker } from '@strata/broker';
import { bundleAssignerDuty, coordinatorConfigSpec, startCoordinator } from '@strata/coordinator';
import type { CallGate, ConfigSpec, ConfigValues, Logger } from '@strata/runtime';
import type { MetadataStore } from '@strata/coordinator';

// The coordinator role is composed here: its leader duties live in packages that depend on it.
const coordinatorRoleSpec = { ...coordinatorConfigSpec, ...autoRecoveryConfigSpec, ...orphanLedgerConfigSpec };
type CoordinatorRoleConfig = ConfigValues<typeof coordinatorRoleSpec>;

/** What every server role's composition root offers (packages/<role>/src/main.ts). */
export interface RunningRole {
  readonly grpcPort: number;
  readonly httpPort: number;
  stop(): Promise<void>;
}

export interface RoleDeps {
  logger: Logger;
  metadata?: MetadataStore;
  /** The call gate of the role's servers (decision 0087); default: open. */
  gate?: CallGate;
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
  {
    name: 'coordinator',
    summary: 'elect a leader and run cluster duties (bundle assignment, auto-recovery of lost bookies, orphan ledgers)',
    spec: coordinatorRoleSpec,
    start: (config: CoordinatorRoleConfig, deps: RoleDeps) =>
      startCoordinator(config, {
        ...deps,
        leaderDuties: [
          bundleAssignerDuty(config),
          ...(config.autoRecoveryEnabled ? [autoRecoveryDuty(config)] : []),
          ...(config.orphanLedgerSweepIntervalMs > 0 ? [orphanSweeperDuty(config)] : []),
        ],
      }),
  },
];
