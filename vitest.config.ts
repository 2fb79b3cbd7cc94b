import { defineConfig } from 'vitest/config';

// Tests start real processes (etcd, bookies, brokers): run files in separate forks, two at a time
// (these machines have 2 cores), with generous timeouts for process start-up.
export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
