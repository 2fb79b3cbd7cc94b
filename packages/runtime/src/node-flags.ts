/**
 * Node flags every Strata server process runs with (decision 0085, which replaced 0083's). Each entry
 * point passes them: `npm start` (package.json), the container's ENTRYPOINT (Dockerfile), the test
 * harness' spawns (testing/roles.ts, testing/standalone.ts) and the benchmarks; test/node-flags.test.ts
 * keeps those in step with this list.
 *
 * `--initial-old-space-size=256`: V8 recomputes the old generation's limit after each mark-compact from
 * the live heap, which for a server is small (20-30 MB: its data lives in Buffers outside the heap), so
 * at steady load the next cycle was always a few MB away: a mark-compact every 100-500 ms. A configured
 * initial size is also a floor for that limit (V8 caps it at half the maximum old generation), so a
 * server collects its old generation rarely (twice in three minutes of load; docs/benchmarks.md).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=256'];
