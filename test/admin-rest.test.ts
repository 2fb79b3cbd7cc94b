// Pulsar's admin REST API v2 on the broker's HTTP port (docs/admin-rest.md), over global fetch: against a
// standalone (coordinator, broker, two bookies in this process, as `strata standalone`), and a pair of
// brokers on one metadata store for the redirect to a topic's owner.
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { startTestBroker, type TestBroker } from '@strata/broker/testing';
import Pulsar, { type Client } from '@strata/client';
import { AdminApi } from '@strata/client/admin';
import { sleep } from '@strata/runtime';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInProcessStandalone, type InProcessStandalone } from './harness/in-process-standalone.js';

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

interface Answer { status: number; body: unknown; headers: Headers }

async function http(base: string, method: string, path: string, body?: unknown, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method, ...init,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // a text answer (health's "ok")
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

describe('admin REST API v2 on a standalone', () => {
  let running: InProcessStandalone;
  let base: string;
  let brokerAddress: string;
  let client: Client;
  const call = (method: string, path: string, body?: unknown) => http(base, method, path, body);

  beforeAll(async () => {
    running = await startInProcessStandalone('strata-admin-rest-');
    const { ports } = running;
    base = `http://127.0.0.1:${ports.brokerHttp}`;
    brokerAddress = `127.0.0.1:${ports.broker}`;
    client = new Pulsar.Client({ serviceUrl: `pulsar://${brokerAddress}`, operationTimeoutSeconds: 10 });
  });

  afterAll(async () => {
    await client?.close();
    await running?.stop();
  });

  it('clusters, brokers, health', async () => {
    expect(await call('GET', '/admin/v2/clusters')).toMatchObject({ status: 200, body: ['standalone'] });
    expect(await call('GET', '/admin/v2/clusters/standalone')).toMatchObject({ status: 200, body: { serviceUrl: base, brokerServiceUrl: `pulsar://${brokerAddress}` } });
    expect((await call('GET', '/admin/v2/clusters/nope')).status).toBe(404);
    expect(await call('GET', '/admin/v2/brokers/standalone')).toMatchObject({ status: 200, body: [base.slice('http://'.length)] });
    expect((await call('GET', '/admin/v2/brokers/other')).status).toBe(404);
    expect(await call('GET', '/admin/v2/brokers/health')).toMatchObject({ status: 200, body: 'ok' });
  });

  it('tenants: list, create, get, update, delete, and their errors', async () => {
    expect((await call('GET', '/admin/v2/tenants')).body).toContain('public');
    const t = unique('tenant');
    expect((await call('PUT', `/admin/v2/tenants/${t}`, { adminRoles: ['ops'], allowedClusters: ['standalone'] })).status).toBe(204);
    expect(await call('GET', `/admin/v2/tenants/${t}`)).toMatchObject({ status: 200, body: { adminRoles: ['ops'], allowedClusters: ['standalone'] } });
    expect(await call('PUT', `/admin/v2/tenants/${t}`, {})).toMatchObject({ status: 409, body: { reason: expect.stringContaining('already exists') } });
    expect((await call('POST', `/admin/v2/tenants/${t}`, { adminRoles: ['ops', 'dev'] })).status).toBe(204);
    expect((await call('GET', `/admin/v2/tenants/${t}`)).body).toEqual({ adminRoles: ['ops', 'dev'], allowedClusters: ['standalone'] });
    expect((await call('GET', '/admin/v2/tenants')).body).toContain(t);
    // Errors: unknown (404), bad name (412, as Pulsar), unknown cluster (412), bad body (400).
    expect((await call('GET', '/admin/v2/tenants/nope-nope')).status).toBe(404);
    expect((await call('POST', '/admin/v2/tenants/nope-nope', {})).status).toBe(404);
    expect((await call('DELETE', '/admin/v2/tenants/nope-nope')).status).toBe(404);
    expect((await call('PUT', '/admin/v2/tenants/bad%20name', {})).status).toBe(412);
    expect((await call('PUT', `/admin/v2/tenants/${unique('t')}`, { allowedClusters: ['elsewhere'] })).status).toBe(412);
    expect((await call('PUT', `/admin/v2/tenants/${unique('t')}`, { adminRoles: 'ops' })).status).toBe(400);
    expect((await call('PUT', `/admin/v2/tenants/${unique('t')}`, [1])).status).toBe(400);
    // A tenant with a namespace is not deleted (409, as Pulsar's "still has active namespaces").
    expect((await call('PUT', `/admin/v2/namespaces/${t}/ns`)).status).toBe(204);
    expect((await call('DELETE', `/admin/v2/tenants/${t}`)).status).toBe(409);
    expect((await call('DELETE', `/admin/v2/namespaces/${t}/ns`)).status).toBe(204);
    expect((await call('DELETE', `/admin/v2/tenants/${t}`)).status).toBe(204);
    expect((await call('GET', `/admin/v2/tenants/${t}`)).status).toBe(404);
  });

  it('namespaces: public/default exists; create with policies, list, policies one by one, delete', async () => {
    expect((await call('GET', '/admin/v2/namespaces/public')).body).toContain('public/default');
    expect((await call('GET', '/admin/v2/namespaces/public/default')).status).toBe(200);
    const ns = `public/${unique('ns')}`;
    expect((await call('PUT', `/admin/v2/namespaces/${ns}`, { bundles: { numBundles: 8 }, retention_policies: { retentionTimeInMinutes: 60, retentionSizeInMB: 10 } })).status).toBe(204);
    expect((await call('PUT', `/admin/v2/namespaces/${ns}`)).status).toBe(409);
    const policies = await call('GET', `/admin/v2/namespaces/${ns}`);
    expect(policies).toMatchObject({
      status: 200,
      body: { bundles: { numBundles: 8 }, retention_policies: { retentionTimeInMinutes: 60, retentionSizeInMB: 10 }, deduplicationEnabled: false, replication_clusters: ['standalone'] },
    });
    expect((policies.body as { bundles: { boundaries: string[] } }).bundles.boundaries).toHaveLength(9);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/bundles`)).body).toMatchObject({ numBundles: 8 });
    // Bundles by range: split one (9 bundles), unload one; an unknown range is 404.
    expect((await call('PUT', `/admin/v2/namespaces/${ns}/0x00000000_0x20000000/split`)).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/bundles`)).body).toMatchObject({ numBundles: 9, boundaries: expect.arrayContaining(['0x10000000']) });
    expect((await call('PUT', `/admin/v2/namespaces/${ns}/0x10000000_0x20000000/unload`)).status).toBe(204);
    expect((await call('PUT', `/admin/v2/namespaces/${ns}/0x00000000_0x20000000/unload`)).status).toBe(404);
    // Retention
    expect((await call('POST', `/admin/v2/namespaces/${ns}/retention`, { retentionTimeInMinutes: -1, retentionSizeInMB: 100 })).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/retention`)).body).toEqual({ retentionTimeInMinutes: -1, retentionSizeInMB: 100 });
    expect((await call('DELETE', `/admin/v2/namespaces/${ns}/retention`)).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/retention`)).body).toEqual({ retentionTimeInMinutes: 0, retentionSizeInMB: 0 });
    expect((await call('POST', `/admin/v2/namespaces/${ns}/retention`, { retentionTimeInMinutes: 'x' })).status).toBe(400);
    // Message TTL: unset answers 204 with no body, as Pulsar's null.
    expect((await call('GET', `/admin/v2/namespaces/${ns}/messageTTL`)).status).toBe(204);
    expect((await call('POST', `/admin/v2/namespaces/${ns}/messageTTL`, 120)).status).toBe(204);
    expect(await call('GET', `/admin/v2/namespaces/${ns}/messageTTL`)).toMatchObject({ status: 200, body: 120 });
    expect((await call('POST', `/admin/v2/namespaces/${ns}/messageTTL`, -5)).status).toBe(400);
    // Deduplication and persistence
    expect((await call('POST', `/admin/v2/namespaces/${ns}/deduplication`, true)).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/deduplication`)).body).toBe(true);
    expect((await call('POST', `/admin/v2/namespaces/${ns}/persistence`, { bookkeeperEnsemble: 2, bookkeeperWriteQuorum: 2, bookkeeperAckQuorum: 1 })).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/persistence`)).body).toMatchObject({ bookkeeperEnsemble: 2, bookkeeperWriteQuorum: 2, bookkeeperAckQuorum: 1 });
    expect((await call('POST', `/admin/v2/namespaces/${ns}/persistence`, { bookkeeperEnsemble: 1, bookkeeperWriteQuorum: 2, bookkeeperAckQuorum: 1 })).status).toBe(400);
    expect((await call('GET', `/admin/v2/namespaces/${ns}`)).body).toMatchObject({ message_ttl_in_seconds: 120, deduplicationEnabled: true, persistence: { bookkeeperEnsemble: 2 } });
    // A namespace with a topic is not deleted (409 as Pulsar's "Cannot delete non empty namespace").
    const topic = `persistent://${ns}/t`;
    expect((await call('PUT', `/admin/v2/persistent/${ns}/t`)).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/topics`)).body).toEqual([topic]);
    expect((await call('PUT', `/admin/v2/non-persistent/${ns}/np`)).status).toBe(204);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/topics?mode=ALL`)).body).toEqual([`non-persistent://${ns}/np`, topic]);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/topics?mode=NON_PERSISTENT`)).body).toEqual([`non-persistent://${ns}/np`]);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/topics?mode=SOME`)).status).toBe(400);
    expect((await call('DELETE', `/admin/v2/non-persistent/${ns}/np`)).status).toBe(204);
    // Unloading the namespace hands its bundles back to the coordinator; the topic stays and serves again.
    expect((await call('PUT', `/admin/v2/namespaces/${ns}/unload`)).status).toBe(204);
    for (let i = 0; i < 100 && (await call('GET', `/admin/v2/persistent/${ns}/t/stats`)).status !== 200; i++) await sleep(100);
    expect((await call('GET', `/admin/v2/persistent/${ns}/t/stats`)).status).toBe(200);
    expect((await call('DELETE', `/admin/v2/namespaces/${ns}`)).status).toBe(409);
    expect((await call('DELETE', `/admin/v2/persistent/${ns}/t`)).status).toBe(204);
    expect((await call('DELETE', `/admin/v2/namespaces/${ns}`)).status).toBe(204);
    // Errors: unknown tenant or namespace (404), bad name (412).
    expect((await call('GET', '/admin/v2/namespaces/nope-nope')).status).toBe(404);
    expect((await call('PUT', '/admin/v2/namespaces/nope-nope/ns')).status).toBe(404);
    expect((await call('GET', `/admin/v2/namespaces/${ns}`)).status).toBe(404);
    expect((await call('DELETE', `/admin/v2/namespaces/${ns}`)).status).toBe(404);
    expect((await call('GET', `/admin/v2/namespaces/${ns}/retention`)).status).toBe(404);
    expect((await call('PUT', '/admin/v2/namespaces/public/bad%20ns')).status).toBe(412);
  });

  it('the pulsar-client-node setup: PUT a topic with no body, PUT partitions with a JSON number, DELETE both', async () => {
    const plain = unique('node-plain');
    const part = unique('node-part');
    // Exactly what its tests send (fetch adds no content type for no body).
    expect((await fetch(`${base}/admin/v2/persistent/public/default/${plain}`, { method: 'PUT' })).status).toBe(204);
    const put = await fetch(`${base}/admin/v2/persistent/public/default/${part}/partitions`, {
      method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '4',
    });
    expect(put.status).toBe(204);
    expect(await call('GET', `/admin/v2/persistent/public/default/${part}/partitions`)).toMatchObject({ status: 200, body: { partitions: 4 } });
    expect(await call('GET', `/admin/v2/persistent/public/default/${plain}/partitions`)).toMatchObject({ status: 200, body: { partitions: 0 } });
    expect((await call('GET', '/admin/v2/persistent/public/default')).body).toContain(`persistent://public/default/${plain}`);
    expect((await call('GET', '/admin/v2/persistent/public/default/partitioned')).body).toContain(`persistent://public/default/${part}`);
    // Clients of the node client then produce on them.
    const producer = await client.createProducer({ topic: `persistent://public/default/${part}` });
    await producer.send({ data: Buffer.from('hello') });
    await producer.close();
    expect((await fetch(`${base}/admin/v2/persistent/public/default/${plain}`, { method: 'DELETE' })).status).toBe(204);
    expect((await fetch(`${base}/admin/v2/persistent/public/default/${part}/partitions`, { method: 'DELETE' })).status).toBe(204);
    expect((await call('GET', `/admin/v2/persistent/public/default/${part}/partitions`)).body).toEqual({ partitions: 0 });
    expect((await call('DELETE', `/admin/v2/persistent/public/default/${plain}`)).status).toBe(404);
    expect((await call('DELETE', `/admin/v2/persistent/public/default/${part}/partitions`)).status).toBe(404);
  });

  it("answers a DELETE whose body has no length (node's http.request, as pulsar-client-node's tests send it)", async () => {
    const topic = unique('raw-delete');
    expect((await fetch(`${base}/admin/v2/persistent/public/default/${topic}`, { method: 'PUT' })).status).toBe(204);
    // http.request writes "{}" after a DELETE's headers with neither Content-Length nor chunking: the
    // server reads it as the start of a next request, which does not parse.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${base}/admin/v2/persistent/public/default/${topic}`, { method: 'DELETE' }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.write('{}');
      req.end();
    });
    expect(status).toBe(204);
    expect((await call('DELETE', `/admin/v2/persistent/public/default/${topic}`)).status).toBe(404);
  });

  it('topics: create conflicts, partition updates, stats, partitioned-stats, internalStats, subscriptions, unload', async () => {
    const name = unique('topic');
    const path = `/admin/v2/persistent/public/default/${name}`;
    expect((await call('PUT', path)).status).toBe(204);
    expect((await call('PUT', path)).status).toBe(409);
    const consumer = await client.subscribe({ topic: name, subscription: 'sub-a', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic: name, batchingEnabled: false });
    for (let i = 0; i < 3; i++) await producer.send({ data: Buffer.from(`m${i}`) });
    const stats = await call('GET', `${path}/stats`);
    expect(stats.status).toBe(200);
    expect(stats.body).toMatchObject({ publishers: [expect.objectContaining({ producerName: expect.any(String) })], subscriptions: { 'sub-a': { consumers: [expect.any(Object)] } }, replication: {} });
    expect((stats.body as { storageSize: number }).storageSize).toBeGreaterThan(0);
    expect((await call('GET', `${path}/subscriptions`)).body).toEqual(['sub-a']);
    const internal = await call('GET', `${path}/internalStats`);
    expect(internal).toMatchObject({ status: 200, body: { entriesAddedCounter: 3, cursors: { 'sub-a': expect.any(Object) } } });
    // In use: deleting without force is refused (412, as Pulsar).
    expect((await call('DELETE', path)).status).toBe(412);
    expect((await call('PUT', `${path}/unload`)).status).toBe(204);
    // The clients reconnect after the unload.
    await producer.send({ data: Buffer.from('after unload') });
    await producer.close();
    await consumer.close();
    expect((await call('DELETE', `${path}?force=true`)).status).toBe(204);
    expect((await call('GET', `${path}/stats`)).status).toBe(404);
    expect((await call('PUT', `${path}/unload`)).status).toBe(404);

    // Partitioned: create, grow (never shrink), partitioned-stats with each partition.
    const pname = unique('ptopic');
    const ppath = `/admin/v2/persistent/public/default/${pname}`;
    expect((await call('PUT', `${ppath}/partitions`, 2)).status).toBe(204);
    expect((await call('PUT', `${ppath}/partitions`, 2)).status).toBe(409);
    expect((await call('PUT', ppath)).status).toBe(409);
    expect((await call('POST', `${ppath}/partitions`, 3)).status).toBe(204);
    expect((await call('POST', `${ppath}/partitions`, 2)).status).toBe(409);
    expect((await call('GET', `${ppath}/partitions`)).body).toEqual({ partitions: 3 });
    const pp = await client.createProducer({ topic: pname, batchingEnabled: false });
    for (let i = 0; i < 6; i++) await pp.send({ data: Buffer.from(`p${i}`) });
    await pp.close();
    const ps = await call('GET', `${ppath}/partitioned-stats`);
    expect(ps).toMatchObject({ status: 200, body: { metadata: { partitions: 3 } } });
    expect(Object.keys((ps.body as { partitions: object }).partitions)).toEqual([0, 1, 2].map((i) => `persistent://public/default/${pname}-partition-${i}`));
    expect((await call('GET', `${ppath}/stats`)).status).toBe(404);
    expect((await call('GET', `${path}/partitioned-stats`)).status).toBe(404);
    expect((await call('DELETE', ppath)).status).toBe(409);
    expect((await call('DELETE', `${ppath}/partitions`)).status).toBe(204);

    // Bad bodies and names: 400 for the body, 412 for a name, as Pulsar.
    expect((await call('PUT', `/admin/v2/persistent/public/default/${unique('b')}/partitions`, '"x"')).status).toBe(400);
    expect((await call('PUT', `/admin/v2/persistent/public/default/${unique('b')}/partitions`, 0)).status).toBe(400);
    expect((await call('PUT', `/admin/v2/persistent/public/default/${unique('b')}/partitions`)).status).toBe(400);
    expect((await call('PUT', `/admin/v2/persistent/public/default/${unique('b')}/partitions`, 100_000)).status).toBe(412);
    expect((await call('POST', `/admin/v2/persistent/public/default/${unique('b')}/partitions`, 2)).status).toBe(404);
    expect((await call('PUT', '/admin/v2/persistent/public/default/bad%20topic')).status).toBe(412);
    expect((await call('PUT', '/admin/v2/persistent/public/nope-ns/t')).status).toBe(404);
    expect((await call('GET', '/admin/v2/persistent/public/nope-ns')).status).toBe(404);
  });

  it('subscriptions: create, list, skip_all, resetcursor, delete (in use: 412 unless forced), on partitions too', async () => {
    const name = unique('subs');
    const path = `/admin/v2/persistent/public/default/${name}`;
    expect((await call('PUT', path)).status).toBe(204);
    expect((await call('PUT', `${path}/subscription/s1`, { ledgerId: -1, entryId: -1 })).status).toBe(204);
    expect((await call('PUT', `${path}/subscription/s1`)).status).toBe(409);
    expect((await call('PUT', `${path}/subscription/s2`, { bad: true })).status).toBe(400);
    const producer = await client.createProducer({ topic: name, batchingEnabled: false });
    for (let i = 0; i < 3; i++) await producer.send({ data: Buffer.from(`m${i}`) });
    await producer.close();
    expect((await call('GET', `${path}/subscriptions`)).body).toEqual(['s1']);
    const backlog = async () => ((await call('GET', `${path}/stats`)).body as { subscriptions: Record<string, { msgBacklog: number }> }).subscriptions.s1?.msgBacklog;
    expect(await backlog()).toBe(3);
    expect((await call('POST', `${path}/subscription/s1/skip_all`)).status).toBe(204);
    expect(await backlog()).toBe(0);
    expect((await call('POST', `${path}/subscription/s1/resetcursor/0`)).status).toBe(204);
    expect(await backlog()).toBe(3);
    expect((await call('POST', `${path}/subscription/s1/resetcursor/soon`)).status).toBe(400);
    // Skip counts unacknowledged entries; expire acknowledges what is older than N seconds, only forward.
    expect((await call('POST', `${path}/subscription/s1/skip/2`)).status).toBe(204);
    expect(await backlog()).toBe(1);
    expect((await call('POST', `${path}/subscription/s1/expireMessages/3600`)).status).toBe(204);
    expect(await backlog()).toBe(1);
    await sleep(20);
    expect((await call('POST', `${path}/subscription/s1/expireMessages/0`)).status).toBe(204);
    expect(await backlog()).toBe(0);
    expect((await call('POST', `${path}/subscription/s1/resetcursor/0`)).status).toBe(204);
    expect((await call('POST', `${path}/subscription/s1/skip/10`)).status).toBe(204);
    expect(await backlog()).toBe(0);
    expect((await call('POST', `${path}/subscription/s1/skip/-1`)).status).toBe(400);
    expect((await call('POST', `${path}/subscription/s1/resetcursor/0`)).status).toBe(204);
    expect(await backlog()).toBe(3);
    expect((await call('POST', `${path}/subscription/nope/skip_all`)).status).toBe(404);
    const consumer = await client.subscribe({ topic: name, subscription: 'busy' });
    expect((await call('DELETE', `${path}/subscription/busy`)).status).toBe(412);
    expect((await call('DELETE', `${path}/subscription/busy?force=true`)).status).toBe(204);
    await consumer.close().catch(() => undefined);
    expect((await call('DELETE', `${path}/subscription/s1`)).status).toBe(204);
    expect((await call('DELETE', `${path}/subscription/s1`)).status).toBe(404);
    expect((await call('GET', `${path}/subscriptions`)).body).toEqual([]);
    // A partitioned topic: the operation runs on every partition.
    const ppath = `/admin/v2/persistent/public/default/${unique('psubs')}`;
    expect((await call('PUT', `${ppath}/partitions`, 2)).status).toBe(204);
    expect((await call('PUT', `${ppath}/subscription/ps`)).status).toBe(204);
    expect((await call('GET', `${ppath}/subscriptions`)).body).toEqual(['ps']);
    expect((await call('DELETE', `${ppath}/subscription/ps`)).status).toBe(204);
    expect((await call('GET', `${ppath}/subscriptions`)).body).toEqual([]);
  });

  it('non-persistent topics: create, list, stats, delete', async () => {
    const name = unique('np');
    const path = `/admin/v2/non-persistent/public/default/${name}`;
    expect((await call('PUT', path)).status).toBe(204);
    expect((await call('GET', '/admin/v2/non-persistent/public/default')).body).toContain(`non-persistent://public/default/${name}`);
    expect((await call('GET', `${path}/stats`)).status).toBe(200);
    expect((await call('DELETE', path)).status).toBe(204);
  });

  it('refuses a partitioned topic over a non-partitioned topic that holds data (REST 409, gRPC ALREADY_EXISTS), and keeps the data', async () => {
    const name = unique('conflict');
    const producer = await client.createProducer({ topic: name });
    await producer.send({ data: Buffer.from('keep me') });
    await producer.close();
    const path = `/admin/v2/persistent/public/default/${name}`;
    expect(await call('PUT', `${path}/partitions`, 3)).toMatchObject({ status: 409, body: { reason: expect.stringContaining('already exists') } });
    const admin = new AdminApi(brokerAddress);
    try {
      await expect(admin.createPartitionedTopic(`persistent://public/default/${name}`, 3)).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    } finally {
      admin.close();
    }
    expect((await call('GET', `${path}/partitions`)).body).toEqual({ partitions: 0 });
    const reader = await client.subscribe({ topic: name, subscription: 'check', subscriptionInitialPosition: 'Earliest' });
    expect((await reader.receive(5_000)).getData().toString()).toBe('keep me');
    await reader.close();
  });

  it('lookup v2 answers the owner as Pulsar does', async () => {
    const name = unique('lookup');
    expect(await call('GET', `/lookup/v2/topic/persistent/public/default/${name}`)).toMatchObject({
      status: 200,
      body: { brokerUrl: `pulsar://${brokerAddress}`, httpUrl: base, nativeUrl: `pulsar://${brokerAddress}`, brokerUrlTls: '' },
    });
    expect((await call('GET', `/lookup/v2/topic/persistent/public/nope-ns/${name}`)).status).toBe(404);
  });

  it('answers malformed, oversized and misrouted requests without falling over', async () => {
    const path = `/admin/v2/tenants/${unique('t')}`;
    expect(await call('PUT', path, '{"adminRoles": [')).toMatchObject({ status: 400, body: { reason: 'request body is not valid JSON' } });
    const big = await fetch(`${base}${path}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: `"${'x'.repeat(2 * 1024 * 1024)}"` })
      .then((r) => r.status, () => 'reset');
    expect(big).toBe(413);
    expect((await call('PATCH', '/admin/v2/tenants')).status).toBe(405);
    expect((await call('DELETE', '/admin/v2/clusters')).status).toBe(405);
    expect((await call('GET', '/admin/v2/nothing-here')).status).toBe(404);
    expect((await call('GET', '/admin/v2/tenants/%E0%A4%A')).status).toBe(404);
    // Still serving.
    expect((await call('GET', '/admin/v2/brokers/health')).status).toBe(200);
  });
});

describe('admin REST API v2 with two brokers', () => {
  let a: TestBroker;
  let b: TestBroker;

  beforeAll(async () => {
    a = await startTestBroker();
    b = await startTestBroker({ metadata: a.metadata, ledgerCluster: a.ledgerCluster, assigner: false });
  });
  afterAll(async () => {
    await b?.stop();
    await a?.stop();
  });

  it('redirects a topic operation to its owner (307, authoritative) and answers reads and lookups anywhere', async () => {
    const baseA = `http://127.0.0.1:${a.broker.httpPort}`;
    const baseB = `http://127.0.0.1:${b.broker.httpPort}`;
    const ns = `public/${unique('two')}`;
    expect((await http(baseA, 'PUT', `/admin/v2/namespaces/${ns}`, { bundles: { numBundles: 16 } })).status).toBe(204);
    // Both brokers list both brokers.
    for (const base of [baseA, baseB]) {
      const brokers = (await http(base, 'GET', '/admin/v2/brokers/standalone')).body as string[];
      expect(brokers.sort()).toEqual([baseA, baseB].map((u) => u.slice('http://'.length)).sort());
    }
    // Find a topic whose bundle B owns, by asking A's lookup.
    let topic: string | undefined;
    for (let i = 0; i < 200 && !topic; i++) {
      const name = `t${i}`;
      const lookup = await http(baseA, 'GET', `/lookup/v2/topic/persistent/${ns}/${name}`);
      if (lookup.status === 200 && (lookup.body as { httpUrl: string }).httpUrl === baseB) topic = name;
      else if (lookup.status === 503) await sleep(100);
    }
    expect(topic).toBeDefined();
    const path = `/admin/v2/persistent/${ns}/${topic}`;
    const redirect = await http(baseA, 'PUT', path, undefined, { redirect: 'manual' });
    expect(redirect.status).toBe(307);
    expect(redirect.headers.get('location')).toBe(`${baseB}${path}?authoritative=true`);
    // fetch follows the 307 (method kept) to the owner.
    expect((await http(baseA, 'PUT', path)).status).toBe(204);
    expect((await http(baseB, 'GET', `${path}/stats`)).status).toBe(200);
    expect((await http(baseA, 'GET', `${path}/stats`)).status).toBe(200);
    // A request already redirected is not bounced again.
    expect((await http(baseA, 'GET', `${path}/stats?authoritative=true`)).status).toBe(503);
    // Reads of metadata are answered by any broker.
    expect((await http(baseA, 'GET', `/admin/v2/persistent/${ns}`)).body).toEqual([`persistent://${ns}/${topic}`]);
    // Partitioned stats gather partitions from both owners.
    expect((await http(baseA, 'PUT', `/admin/v2/persistent/${ns}/spread/partitions`, 8)).status).toBe(204);
    const client = new Pulsar.Client({ serviceUrl: `pulsar://${a.address}`, operationTimeoutSeconds: 10 });
    try {
      const producer = await client.createProducer({ topic: `persistent://${ns}/spread`, batchingEnabled: false });
      for (let i = 0; i < 16; i++) await producer.send({ data: Buffer.from(String(i)) });
      await producer.close();
    } finally {
      await client.close();
    }
    const owners = new Set<string>();
    for (let i = 0; i < 8; i++) owners.add(((await http(baseA, 'GET', `/lookup/v2/topic/persistent/${ns}/spread-partition-${i}`)).body as { httpUrl: string }).httpUrl);
    expect([...owners].sort()).toEqual([baseA, baseB].sort());
    const ps = await http(baseA, 'GET', `/admin/v2/persistent/${ns}/spread/partitioned-stats`);
    expect(ps).toMatchObject({ status: 200, body: { metadata: { partitions: 8 } } });
    expect(Object.keys((ps.body as { partitions: object }).partitions)).toHaveLength(8);
    // A subscription operation on a partitioned topic is forwarded to each partition's owner.
    expect((await http(baseA, 'PUT', `/admin/v2/persistent/${ns}/spread/subscription/everywhere`)).status).toBe(204);
    expect((await http(baseB, 'GET', `/admin/v2/persistent/${ns}/spread/subscriptions`)).body).toEqual(['everywhere']);
    expect((await http(baseA, 'DELETE', path)).status).toBe(204);
  });
});

describe('admin REST API v2 with automatic topic creation off', () => {
  let tb: TestBroker;
  beforeAll(async () => {
    tb = await startTestBroker({ config: { allowAutoTopicCreation: false } });
  });
  afterAll(async () => {
    await tb?.stop();
  });

  it('still creates a topic on an explicit PUT', async () => {
    const base = `http://127.0.0.1:${tb.broker.httpPort}`;
    const name = unique('explicit');
    expect((await http(base, 'GET', `/admin/v2/persistent/public/default/${name}/stats`)).status).toBe(404);
    expect((await http(base, 'PUT', `/admin/v2/persistent/public/default/${name}`)).status).toBe(204);
    expect((await http(base, 'GET', `/admin/v2/persistent/public/default/${name}/stats`)).status).toBe(200);
  });
});
