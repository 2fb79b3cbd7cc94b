export { BookieProcesses, type BookieProcessesOptions } from './bookie-processes.js';
export { FakeBookieTransport } from './fake-bookie-transport.js';
export { InMemoryLedgerClient, InMemoryLedgerCluster, type InMemoryLedgerClientOptions } from './in-memory-ledger-client.js';
