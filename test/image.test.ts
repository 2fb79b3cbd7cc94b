// The Strata container image, built locally by scripts/build-image.sh (from this machine's files, no
// registry), passes the image checks of test/image-checks.ts. The image the root Dockerfile builds
// passes the same checks in test/dockerfile.test.ts (opt-in: `npm run check:dockerfile`).
import { existsSync } from 'node:fs';
import { beforeAll, describe } from 'vitest';
import { dockerUp, imageChecks, repoRoot, run } from './image-checks.js';

const image = `strata:dev`;

const binBuilt = existsSync(`${repoRoot}/packages/cli/dist/bin.js`);
const skipReason = !dockerUp()
  ? 'no Docker engine answers `docker info` (start one with `bash scripts/setup.sh`)'
  : !binBuilt
    ? 'packages/cli/dist/bin.js is not built (npm run build)'
    : '';
if (skipReason) console.warn(`SKIPPED test/image.test.ts: ${skipReason}`);
// `strata --help` in the image needs a bin that runs from the local build in the first place.
const binRuns = binBuilt && run('node', ['packages/cli/dist/bin.js', '--help']).status === 0;
if (!skipReason && !binRuns) console.warn('SKIPPED `strata --help` in test/image.test.ts: `node packages/cli/dist/bin.js --help` fails on the host');

describe.skipIf(skipReason !== '')('the strata image', () => {
  beforeAll(() => {
    const built = run('bash', ['scripts/build-image.sh'], 300_000);
    if (built.status !== 0) throw new Error(`scripts/build-image.sh failed:\n${built.stderr}`);
  }, 320_000);

  imageChecks(() => image, { runsCli: binRuns });
});
