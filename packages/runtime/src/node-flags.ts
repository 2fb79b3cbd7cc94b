/**
 * Node flags every Strata server process runs with (decision 0083). Each entry point passes them:
 * `npm start` (package.json), the container's ENTRYPOINT (Dockerfile), the test harness' spawns
 * (testing/roles.ts, testing/standalone.ts) and `scripts/bench.mjs`; test/node-flags.test.ts keeps those
 * in step with this list.
 *
 * `--max-semi-space-size=4`: V8 (Node 20) starts incremental marking whenever the old generation's
 * headroom is below the young generation's capacity. A server whose young generation grew to its default
 * 16 MB under a burst, with a small old generation, then ran a mark-compact every 70-150 ms at steady
 * load (each a few ms of pause on the event loop): a 4 MB semi-space keeps the capacity under the smallest
 * headroom V8 leaves (8 MB).
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
