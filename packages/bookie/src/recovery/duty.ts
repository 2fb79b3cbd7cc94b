import type { LeaderContext, LeaderDuty } from '@strata/coordinator';
import { field } from '@strata/runtime';
import { BookieLedgerClient } from '../client/client.js';
import { AutoRecovery } from './auto-recovery.js';

/** Config fields of auto-recovery, for the role that runs it (the coordinator). */
export const autoRecoveryConfigSpec = {
  autoRecoveryEnabled: field.boolean(true, 'the leading coordinator re-replicates the ledgers of bookies lost for good'),
  lostBookieGraceMs: field.int(60_000, 'a bookie missing this long is lost for good and its ledgers are re-replicated', { min: 1_000 }),
  autoRecoveryIntervalMs: field.int(5_000, 'time between auto-recovery passes', { min: 100 }),
};

/**
 * Auto-recovery as a coordinator leader duty: one AutoRecovery (with its own ledger client on the
 * leader's store) per leadership term, stopped when the term ends.
 */
export function autoRecoveryDuty(options: { lostBookieGraceMs: number; autoRecoveryIntervalMs: number }): LeaderDuty {
  return {
    name: 'auto-recovery',
    async run(context: LeaderContext): Promise<void> {
      const ledgerClient = new BookieLedgerClient({ metadata: context.store, logger: context.logger });
      const recovery = new AutoRecovery({
        metadata: context.store,
        logger: context.logger,
        ledgerClient,
        options: { lostBookieGraceMs: options.lostBookieGraceMs, checkIntervalMs: options.autoRecoveryIntervalMs },
      });
      try {
        await recovery.start();
        if (!context.signal.aborted) {
          await new Promise<void>((resolve) => context.signal.addEventListener('abort', () => resolve(), { once: true }));
        }
      } finally {
        await recovery.stop();
        await ledgerClient.close();
      }
    },
  };
}
