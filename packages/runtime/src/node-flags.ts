/**
 * Node flags every Strata server process runs with (decision 0085, which replaced 0083's). Each entry
 * point passes them: `npm start` (package.json), the container's ENTRYPOINT (Dockerfile), the test
 * harness' spawns (testing/roles.ts, testing/standalone.ts) and the benchmarks; test/node-flags.test.ts
 * keeps those in step with this list.
 *
 * `--initial-old-space-size=256`: V8 recomputes the old generation's limit after each mark-compact from
 * the live heap, which for a server is small (20-30 MB), and counts external memory (gRPC's HTTP/2
 * buffers) against it; at steady load that started a new mark-compact every 100-500 ms. A configured
 * initial size is also a floor for that limit (V8 caps it at half the maximum old generation), so a
 * server collects the old generation every several seconds instead.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=256'];
