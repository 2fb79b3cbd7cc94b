import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ERROR_CODE_METADATA_KEY, ErrorCode, principalOf, ServiceHost, silentLogger, sleep, StrataError, type AuthorizeRequest, type CallGate,
  type ServiceAccess,
} from '../src/index.js';

// A service defined by hand (JSON on the wire), so the seam is tested without any role's protos.
interface Note { topic?: string; text?: string }
const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};
const method = (name: string, stream: boolean) => ({
  path: `/test.Notes/${name}`, requestStream: stream, responseStream: stream, originalName: name,
  requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize,
});
const notesService = { Say: method('Say', false), Chat: method('Chat', true) } as unknown as grpc.ServiceDefinition;
const NotesClient = grpc.makeGenericClientConstructor(notesService, 'Notes');
type NotesClient = grpc.Client & {
  Say(req: Note, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Note) => void): void;
  Chat(md: grpc.Metadata): grpc.ClientDuplexStream<Note, Note>;
};
const notesAccess: ServiceAccess<{ Say: unknown; Chat: unknown }> = {
  Say: { action: 'produce', resourceOf: (m: Note) => m.topic },
  Chat: { action: 'produce', resourceOf: (m: Note) => m.topic },
};

/** Tokens are role names; a role may use topics that start with its name. Optionally slow, to test ordering. */
function tokenGate(opts: { authorizeDelayMs?: number } = {}): CallGate & { seen: AuthorizeRequest[] } {
  const seen: AuthorizeRequest[] = [];
  return {
    seen,
    authenticate: (c) => {
      const token = c.headers.get('authorization');
      if (!token) throw new StrataError(ErrorCode.UNAUTHENTICATED, 'no token');
      return { role: token };
    },
    authorize: async (r) => {
      seen.push(r);
      if (opts.authorizeDelayMs) await sleep(opts.authorizeDelayMs);
      if (r.action === 'metrics') return;
      if (!r.resource?.startsWith(r.principal.role ?? '-')) throw new StrataError(ErrorCode.PERMISSION_DENIED, `${r.principal.role} may not use ${r.resource}`);
    },
  };
}

const hosts: ServiceHost[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(hosts.splice(0).map((h) => h.stop(100)));
});

async function startNotes(gate: CallGate, heard: Note[] = []): Promise<{ host: ServiceHost; client: NotesClient }> {
  const host = new ServiceHost({
    role: 'test', grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0, maxMessageBytes: 1 << 20, logger: silentLogger(), gate,
  });
  hosts.push(host);
  host.addService(notesService, {
    Say: (call: grpc.ServerUnaryCall<Note, Note>, cb: grpc.sendUnaryData<Note>) => {
      heard.push(call.request);
      cb(null, { text: `heard by ${principalOf(call) ?? 'anonymous'}` });
    },
    Chat: (call: grpc.ServerDuplexStream<Note, Note>) => {
      call.on('data', (m: Note) => {
        heard.push(m);
        call.write({ text: `${principalOf(call)}:${m.text}` });
      });
      call.on('end', () => call.end());
    },
  }, notesAccess);
  host.addRoute('/notes', (_req, res) => void res.end('notes'), { action: 'consume', resourceOf: (_req, url) => url.searchParams.get('topic') ?? undefined });
  await host.start();
  const client = new NotesClient(`127.0.0.1:${host.ports.grpcPort}`, grpc.credentials.createInsecure()) as unknown as NotesClient;
  clients.push(client);
  return { host, client };
}

function md(token?: string, extra: Record<string, string> = {}): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token) m.set('authorization', token);
  for (const [k, v] of Object.entries(extra)) m.set(k, v);
  return m;
}

function say(client: NotesClient, note: Note, metadata: grpc.Metadata): Promise<Note> {
  return new Promise((resolve, reject) => client.Say(note, metadata, (err, res) => (err ? reject(err) : resolve(res ?? {}))));
}

describe('the call gate (decision 0087)', () => {
  it('refuses a service that leaves a method without an access rule', () => {
    const host = new ServiceHost({ role: 'test', grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0, maxMessageBytes: 1 << 20, logger: silentLogger() });
    const partial = { Say: notesAccess.Say } as unknown as ServiceAccess<{ Say: unknown; Chat: unknown }>;
    expect(() => host.addService(notesService, { Say: () => undefined, Chat: () => undefined }, partial)).toThrow(/no access rule for \/test\.Notes\/Chat/);
  });

  it('authenticates every unary call, authorizes its resource, and hands the role to the handler', async () => {
    const heard: Note[] = [];
    const { client } = await startNotes(tokenGate(), heard);

    const anonymous = await say(client, { topic: 'alice/t', text: 'x' }, md()).catch((e: grpc.ServiceError) => e);
    expect((anonymous as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((anonymous as grpc.ServiceError).metadata.get(ERROR_CODE_METADATA_KEY)).toEqual(['UNAUTHENTICATED']);

    const denied = await say(client, { topic: 'bob/t', text: 'x' }, md('alice')).catch((e: grpc.ServiceError) => e);
    expect((denied as grpc.ServiceError).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((denied as grpc.ServiceError).details).toContain('alice may not use bob/t');
    expect(heard).toEqual([]);

    // A principal the client claims for itself is dropped: only the gate sets it.
    expect(await say(client, { topic: 'alice/t', text: 'x' }, md('alice', { 'strata-principal': 'root' }))).toEqual({ text: 'heard by alice' });
    expect(heard).toHaveLength(1);
  });

  it('checks every message of a stream that names a resource, in order, and ends the stream at the first refusal', async () => {
    const heard: Note[] = [];
    const gate = tokenGate({ authorizeDelayMs: 30 });
    const { client } = await startNotes(gate, heard);
    const chat = client.Chat(md('alice'));
    const replies: string[] = [];
    chat.on('data', (m: Note) => replies.push(m.text ?? ''));
    const ended = new Promise<grpc.ServiceError>((resolve) => chat.on('error', resolve));
    chat.write({ topic: 'alice/a', text: '1' }); // checked (slow): the next ones must wait behind it
    chat.write({ text: '2' }); //                   names nothing: passes
    chat.write({ topic: 'bob/b', text: '3' }); //  refused: the stream ends here
    chat.write({ text: '4' });
    const err = await ended;
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(heard.map((m) => m.text)).toEqual(['1', '2']);
    expect(replies).toEqual(['alice:1', 'alice:2']);
    expect(gate.seen.map((r) => r.resource)).toEqual(['alice/a', 'bob/b']);
  });

  it('leaves health public and puts every HTTP route, /metrics included, behind the gate', async () => {
    const { host } = await startNotes(tokenGate());
    const base = `http://127.0.0.1:${host.ports.httpPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const noToken = await fetch(`${base}/metrics`);
    expect(noToken.status).toBe(401);
    expect(await noToken.json()).toEqual({ reason: 'no token' });
    expect((await fetch(`${base}/metrics`, { headers: { authorization: 'alice' } })).status).toBe(200);
    expect((await fetch(`${base}/notes?topic=bob/x`, { headers: { authorization: 'alice' } })).status).toBe(403);
    const allowed = await fetch(`${base}/notes?topic=alice/x`, { headers: { authorization: 'alice' } });
    expect([allowed.status, await allowed.text()]).toEqual([200, 'notes']);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
  });

  it('refuses with the stage\'s code, not INTERNAL, when a gate fails by throwing a plain error', async () => {
    const broken: CallGate = { authenticate: () => { throw new Error('jwks unreachable'); }, authorize: () => undefined };
    const { client } = await startNotes(broken);
    const err = await say(client, { topic: 'a' }, md('a')).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
  });
});

describe('JSON API endpoints behind the gate', () => {
  async function startApi(gate?: CallGate): Promise<string> {
    const host = new ServiceHost({
      role: 'test', grpcHost: '127.0.0.1', grpcPort: 0, httpHost: '127.0.0.1', httpPort: 0, maxMessageBytes: 1 << 20, logger: silentLogger(), gate,
    });
    hosts.push(host);
    host.addApi([
      { method: 'GET', path: '/api/things/:name', access: { action: 'consume', resourceOf: (p) => p.name }, handle: (r) => ({ body: { name: r.params.name, by: r.principal.role ?? null } }) },
      { method: 'GET', path: '/api/things/special', access: { action: 'consume', resourceOf: () => 'alice/special' }, handle: () => ({ body: 'static wins' }) },
      { method: 'PUT', path: '/api/things/:name', access: { action: 'produce', resourceOf: (p) => p.name }, handle: (r) => ({ status: 200, body: { got: r.body ?? null } }) },
      { method: 'DELETE', path: '/api/things/:name', access: { action: 'produce', resourceOf: (p) => p.name }, handle: (r) => {
        throw new StrataError(r.params.name === 'alice/busy' ? ErrorCode.ALREADY_EXISTS : ErrorCode.NOT_FOUND, `no ${r.params.name}`);
      } },
    ]);
    await host.start();
    return `http://127.0.0.1:${host.ports.httpPort}`;
  }

  it('routes by method and path (static segments first), decodes parameters, and answers errors as Pulsar does', async () => {
    const base = await startApi();
    expect(await (await fetch(`${base}/api/things/a%2Fb`)).json()).toEqual({ name: 'a/b', by: null });
    expect(await (await fetch(`${base}/api/things/special`)).text()).toBe('static wins');
    const put = await fetch(`${base}/api/things/x`, { method: 'PUT', body: '3' });
    expect([put.status, await put.json()]).toEqual([200, { got: 3 }]);
    const bad = await fetch(`${base}/api/things/x`, { method: 'PUT', body: '{nope' });
    expect([bad.status, await bad.json()]).toEqual([400, { reason: 'request body is not valid JSON' }]);
    expect((await fetch(`${base}/api/things/x`, { method: 'PUT', body: 'x'.repeat(1024 * 1024 + 1) })).status).toBe(413);
    const missing = await fetch(`${base}/api/things/x`, { method: 'DELETE' });
    expect([missing.status, await missing.json()]).toEqual([404, { reason: 'no x' }]);
    expect((await fetch(`${base}/api/things/alice%2Fbusy`, { method: 'DELETE' })).status).toBe(409);
    expect((await fetch(`${base}/api/things/x`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${base}/api/nothing`)).status).toBe(404);
  });

  it('runs the gate with each endpoint\'s action and resource before its handler', async () => {
    const gate = tokenGate();
    const base = await startApi(gate);
    expect((await fetch(`${base}/api/things/alice%2Fone`)).status).toBe(401);
    expect((await fetch(`${base}/api/things/bob%2Fone`, { headers: { authorization: 'alice' } })).status).toBe(403);
    const ok = await fetch(`${base}/api/things/alice%2Fone`, { headers: { authorization: 'alice' } });
    expect(await ok.json()).toEqual({ name: 'alice/one', by: 'alice' });
    expect(gate.seen.map((r) => [r.action, r.resource, r.operation])).toEqual([
      ['consume', 'bob/one', 'GET /api/things/bob%2Fone'],
      ['consume', 'alice/one', 'GET /api/things/alice%2Fone'],
    ]);
  });
});
