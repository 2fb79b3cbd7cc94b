// establishIdentity on real directories without metadata: the cookie's files, a journal on its own
// directory (a second copy of the cookie), and a first start cut between the two writes.
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, systemClock } from '@strata/runtime';
import { afterEach, describe, expect, it } from 'vitest';
import { establishIdentity, type IdentityOptions } from '../src/server/identity.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(): Promise<IdentityOptions> {
  const root = await mkdtemp(join(tmpdir(), 'strata-cookie-'));
  dirs.push(root);
  let n = 0;
  return {
    dataDir: join(root, 'data'), journalDir: join(root, 'journal'), cluster: 'c1', configuredId: '', expectedAddress: undefined,
    metadata: undefined, sessionTtlMs: 2000, logger: silentLogger(), clock: systemClock,
    randomHex: (bytes) => (++n).toString(16).padStart(bytes * 2, '0'),
  };
}

const cookieOf = async (dir: string) => JSON.parse(await readFile(join(dir, 'cookie.json'), 'utf8')) as Record<string, unknown>;

describe('bookie cookie files', () => {
  it('a new data dir gets a generated id, written to the data dir and the journal dir, and kept', async () => {
    const o = await setup();
    const first = await establishIdentity(o);
    expect(first).toMatchObject({ bookieId: 'bk-0000000000000001', origin: 'new' });
    expect(await cookieOf(o.dataDir)).toEqual(await cookieOf(o.journalDir!));
    expect(await cookieOf(o.dataDir)).toMatchObject({ formatVersion: 1, bookieId: 'bk-0000000000000001', cluster: 'c1', instanceId: '' });
    const again = await establishIdentity(o);
    expect(again).toMatchObject({ bookieId: 'bk-0000000000000001', origin: 'cookie' });
  });

  it('refuses a journal dir without the cookie (another disk mounted there) or with another bookie\'s', async () => {
    const o = await setup();
    await establishIdentity(o);
    await unlink(join(o.journalDir!, 'cookie.json'));
    await expect(establishIdentity(o)).rejects.toMatchObject({ code: 'CONFIG', message: expect.stringContaining('has no cookie.json but data dir') });
    const other = await setup();
    await establishIdentity({ ...other, randomHex: () => 'ff'.repeat(8) });
    await writeFile(join(o.journalDir!, 'cookie.json'), await readFile(join(other.journalDir!, 'cookie.json')));
    await expect(establishIdentity(o)).rejects.toMatchObject({ code: 'CONFIG', message: expect.stringContaining('mount the journal and data disks of one bookie') });
  });

  it('finishes a first start that was cut after the journal dir\'s copy', async () => {
    const o = await setup();
    const first = await establishIdentity(o);
    await unlink(join(o.dataDir, 'cookie.json'));
    expect(await establishIdentity(o)).toMatchObject({ bookieId: first.bookieId, origin: 'cookie' });
    expect(await cookieOf(o.dataDir)).toEqual(await cookieOf(o.journalDir!));
  });

  it('a data dir with ledgers but no cookie adopts --bookie-id or the address; an unusable id is refused', async () => {
    const o = await setup();
    await establishIdentity({ ...o, journalDir: undefined, dataDir: o.dataDir });
    await unlink(join(o.dataDir, 'cookie.json'));
    await writeFile(join(o.dataDir, 'checkpoint.json'), '{}');
    expect(await establishIdentity({ ...o, journalDir: undefined, expectedAddress: '10.0.0.1:3181' })).toMatchObject({ bookieId: '10.0.0.1:3181', origin: 'adopted-address' });
    const fresh = await setup();
    await expect(establishIdentity({ ...fresh, configuredId: 'a/b' })).rejects.toMatchObject({ code: 'CONFIG' });
  });
});
