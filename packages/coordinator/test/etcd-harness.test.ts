import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { expect, test } from 'vitest';
import { EtcdCluster } from '../src/testing/index.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('EtcdCluster: kill, restart, pause/resume a member; stop kills every pid and removes the temp dirs', async () => {
  const etcd = await EtcdCluster.start({ members: 1 });
  try {
    expect(etcd.url).toBe(`etcd://${etcd.endpoints[0]}`);
    expect(etcd.endpoints[0]).toMatch(/^127\.0\.0\.1:\d+$/);
    const pid = etcd.pid(0)!;
    expect(alive(pid)).toBe(true);
    await etcd.kill(0);
    expect(alive(pid)).toBe(false);
    expect(etcd.pid(0)).toBeUndefined();
    await etcd.restart(0);
    const pid2 = etcd.pid(0)!;
    expect(pid2).not.toBe(pid);
    etcd.pause(0);
    await expect(etcd.waitHealthy(0, 1_500)).rejects.toThrow(/not healthy/);
    etcd.resume(0);
    await etcd.waitHealthy(0);
    const dir = dirname(etcd.logFile(0));
    expect(existsSync(dir)).toBe(true);
    await etcd.stop();
    expect(alive(pid2)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  } finally {
    await etcd.stop();
  }
});
