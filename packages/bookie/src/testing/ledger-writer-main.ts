/**
 * A ledger writer process for fencing tests: creates a ledger and appends entries `entry-<n>` for ever
 * (a window of `--window` in flight), logging to `--log` (synchronously, so the file never claims more
 * than was acknowledged): `ledger <id>` first, then `ack <entryId>` per acknowledgement, then
 * `error <code>` when an append fails, after which it exits with status 3.
 *
 * Args: --metadata-url URL --cluster NAME --log FILE [--ensemble 3 --write 3 --ack 2 --window 20]
 */
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createMetadataStore } from '@strata/coordinator';
import { createLogger, isStrataError } from '@strata/runtime';
import { BookieLedgerClient } from '../client/client.js';

const { values } = parseArgs({
  options: {
    'metadata-url': { type: 'string' }, cluster: { type: 'string', default: 'standalone' }, log: { type: 'string' },
    ensemble: { type: 'string', default: '3' }, write: { type: 'string', default: '3' }, ack: { type: 'string', default: '2' },
    window: { type: 'string', default: '20' },
  },
});
const logFile = values.log!;
const logger = createLogger({ level: 'warn', name: 'ledger-writer' });
const metadata = await createMetadataStore(values['metadata-url']!, { logger, cluster: values.cluster });
const client = new BookieLedgerClient({ metadata, logger, options: { addTimeoutMs: 3000 } });
const writer = await client.createLedger({ ensembleSize: Number(values.ensemble), writeQuorum: Number(values.write), ackQuorum: Number(values.ack) });
appendFileSync(logFile, `ledger ${writer.ledgerId}\n`);

let failed = false;
let next = 0;
const inFlight = new Set<Promise<void>>();
while (!failed) {
  const n = next++;
  const p = writer.append(Buffer.from(`entry-${n}`)).then(
    (id) => {
      appendFileSync(logFile, `ack ${id}\n`);
    },
    (err: unknown) => {
      if (!failed) appendFileSync(logFile, `error ${isStrataError(err) ? err.code : String(err)}\n`);
      failed = true;
    },
  );
  inFlight.add(p);
  void p.finally(() => inFlight.delete(p));
  if (inFlight.size >= Number(values.window)) await Promise.race(inFlight);
}
await Promise.allSettled(inFlight);
process.exit(3);
