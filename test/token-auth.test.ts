// Token authentication (issue 15, decision 0090) against a real `strata standalone` process started with
// the CLI's own flags and a secret key made by `strata tokens create-secret-key`: valid tokens produce and
// consume; every kind of bad token is refused with AuthenticationError at once (not retried until the
// operation timeout); the REST API answers 401; health and /metrics stay open; and no token reaches the
// broker's log or an error message.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Pulsar, { ClientError, type Client } from '@strata/client';
import { StandaloneProcess, strataBin, tempDir } from '@strata/runtime/testing';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;
const AUDIENCE = 'strata-test';

/** `strata <args>`; resolves with stdout, stderr and the exit code (never rejects on a non-zero exit). */
async function strata(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [strataBin(), ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

let dir: { path: string; remove(): Promise<void> };
let keyFile: string;
let secret: Buffer;
let standalone: StandaloneProcess;
/** Every bad token used, to check none of them reaches a log line. */
const badTokens: string[] = [];
let goodToken: string;

const b64url = (value: object | string) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

function sign(claims: Record<string, unknown>, key: Uint8Array | Parameters<SignJWT['sign']>[0] = secret, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(key);
}

beforeAll(async () => {
  dir = await tempDir('strata-auth-');
  keyFile = join(dir.path, 'secret.key');
  const made = await strata(['tokens', 'create-secret-key', '--output', keyFile]);
  expect(made.code).toBe(0);
  secret = readFileSync(keyFile);
  expect(secret.length).toBe(32);
  standalone = await StandaloneProcess.start({
    logLevel: 'info',
    args: ['--authentication-enabled', '--authentication-providers', 'token', '--token-secret-key', `file://${keyFile}`, '--token-audience', AUDIENCE],
  });
  goodToken = await sign({ sub: 'alice', aud: AUDIENCE, exp: now() + 3600 });
}, 120_000);

afterAll(async () => {
  await standalone?.stop();
  await dir?.remove();
});

function client(authentication?: unknown): Client {
  return new Pulsar.Client({
    serviceUrl: standalone.serviceUrl, operationTimeoutSeconds: 20,
    ...(authentication === undefined ? {} : { authentication: authentication as never }),
  });
}

describe('token authentication on a standalone', () => {
  it('a valid token produces and consumes', async () => {
    const c = client(new Pulsar.AuthenticationToken({ token: goodToken }));
    try {
      const topic = unique('auth-ok');
      const consumer = await c.subscribe({ topic, subscription: 's', subscriptionInitialPosition: 'Earliest' });
      const producer = await c.createProducer({ topic });
      await producer.send({ data: Buffer.from('hello') });
      const msg = await consumer.receive(10_000);
      expect(msg.getData().toString()).toBe('hello');
      await consumer.acknowledge(msg);
      await producer.close();
      await consumer.close();
    } finally {
      await c.close();
    }
  });

  it.each([
    ['sync', (t: string) => () => t],
    ['async', (t: string) => async () => t],
  ] as const)('a %s token supplier is asked once for one createProducer on one broker, as the official test expects', async (_kind, make) => {
    let calls = 0;
    const supply = make(goodToken);
    // localhost: the service URL's connection and the advertised 127.0.0.1 one are two channels, one token.
    const c = new Pulsar.Client({
      serviceUrl: `pulsar://localhost:${standalone.address.split(':')[1]}`, operationTimeoutSeconds: 20,
      authentication: new Pulsar.AuthenticationToken({ token: () => { calls++; return supply(); } }),
    });
    try {
      const producer = await c.createProducer({ topic: unique('auth-supplier') });
      await producer.send({ data: Buffer.from('x') });
      await producer.close();
      expect(calls).toBe(1);
    } finally {
      await c.close();
    }
  });

  it.each<[string, () => Promise<string | undefined>]>([
    ['no token', async () => undefined],
    ['expired', () => sign({ sub: 'alice', aud: AUDIENCE, exp: now() - 60 })],
    ['not yet valid', () => sign({ sub: 'alice', aud: AUDIENCE, nbf: now() + 3600 })],
    ['wrong signature', async () => { const t = await sign({ sub: 'alice', aud: AUDIENCE }); return `${t.slice(0, -4)}${t.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`; }],
    ['alg: none', async () => `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'alice', aud: AUDIENCE })}.`],
    ['wrong audience', () => sign({ sub: 'alice', aud: 'another-cluster' })],
    ['no audience', () => sign({ sub: 'alice' })],
    ['a token for another secret key', () => sign({ sub: 'alice', aud: AUDIENCE }, randomBytes(32))],
    ['a token for an RSA key', () => sign({ sub: 'alice', aud: AUDIENCE }, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256')],
    ['no role claim', () => sign({ aud: AUDIENCE })],
    ['garbage', async () => 'not-a-jwt-at-all'],
    ['empty', async () => ''],
  ])('refuses %s with AuthenticationError, at once', async (_name, make) => {
    const token = await make();
    if (token) badTokens.push(token);
    const c = client(token === undefined ? undefined : new Pulsar.AuthenticationToken({ token }));
    const started = Date.now();
    try {
      const err = await c.createProducer({ topic: unique('auth-bad') }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ClientError);
      expect((err as ClientError).code).toBe('AUTHENTICATION');
      expect((err as ClientError).result).toBe('AuthenticationError');
      expect((err as ClientError).retriable).toBe(false);
      expect((err as Error).message).toMatch(/^Failed to create producer: AuthenticationError/);
      if (token) expect((err as Error).message).not.toContain(token);
      // Not retried until the operation timeout (20 s).
      expect(Date.now() - started).toBeLessThan(5_000);
      // A consumer too, and a plain lookup.
      const sub = await c.subscribe({ topic: unique('auth-bad'), subscription: 's' }).then(() => undefined, (e: unknown) => e);
      expect((sub as ClientError).code).toBe('AUTHENTICATION');
      const parts = await c.getPartitionsForTopic(unique('auth-bad')).then(() => undefined, (e: unknown) => e);
      expect((parts as ClientError).result).toBe('AuthenticationError');
    } finally {
      await c.close();
    }
  });

  it('a supplier that throws fails as an AuthenticationError, and is asked again next time', async () => {
    let calls = 0;
    const c = client(new Pulsar.AuthenticationToken({ token: () => { calls++; if (calls === 1) throw new Error('vault down'); return goodToken; } }));
    try {
      const err = await c.createProducer({ topic: unique('auth-throws') }).then(() => undefined, (e: unknown) => e);
      expect((err as ClientError).code).toBe('AUTHENTICATION');
      expect((err as Error).message).toContain('vault down');
      const producer = await c.createProducer({ topic: unique('auth-throws') });
      await producer.close();
      expect(calls).toBe(2);
    } finally {
      await c.close();
    }
  });

  it('the REST API answers 401 {reason} without a valid token; health and /metrics stay open', async () => {
    const base = `http://${standalone.webAddress}`;
    const bad = await sign({ sub: 'alice', aud: AUDIENCE, exp: now() - 60 });
    badTokens.push(bad);
    for (const headers of [{}, { authorization: `Bearer ${bad}` }, { authorization: 'Basic abc' }, { authorization: 'Bearer ' }] as Array<Record<string, string>>) {
      const res = await fetch(`${base}/admin/v2/tenants`, { headers });
      expect(res.status).toBe(401);
      const body = (await res.json()) as { reason?: unknown };
      expect(typeof body.reason).toBe('string');
      expect(body.reason).not.toContain(bad);
    }
    const ok = await fetch(`${base}/admin/v2/tenants`, { headers: { authorization: `Bearer ${goodToken}` } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toContain('public');
    const lookup = await fetch(`${base}/lookup/v2/topic/persistent/public/default/${unique('t')}`);
    expect(lookup.status).toBe(401);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('a web service URL client sends the token on its REST lookups', async () => {
    const c = new Pulsar.Client({ serviceUrl: `http://${standalone.webAddress}`, operationTimeoutSeconds: 20, authentication: new Pulsar.AuthenticationToken({ token: goodToken }) });
    const anonymous = new Pulsar.Client({ serviceUrl: `http://${standalone.webAddress}`, operationTimeoutSeconds: 20 });
    try {
      const producer = await c.createProducer({ topic: unique('auth-web') });
      await producer.close();
      const err = await anonymous.createProducer({ topic: unique('auth-web') }).then(() => undefined, (e: unknown) => e);
      expect((err as ClientError).code).toBe('AUTHENTICATION');
    } finally {
      await c.close();
      await anonymous.close();
    }
  });

  it('CLI round trip: tokens create -> validate -> produce with --token, consume with --token-file and STRATA_AUTH_TOKEN', async () => {
    const created = await strata(['tokens', 'create', '--subject', 'bob', '--expiry-time', '1h', '--audience', AUDIENCE, '--secret-key', `file://${keyFile}`]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    const shown = await strata(['tokens', 'show', token]);
    expect(shown.stdout).toContain('"sub":"bob"');
    const valid = await strata(['tokens', 'validate', token, '--secret-key', `file://${keyFile}`, '--token-audience', AUDIENCE]);
    expect(valid.code).toBe(0);
    expect(JSON.parse(valid.stdout)).toMatchObject({ role: 'bob' });
    const wrongAud = await strata(['tokens', 'validate', token, '--secret-key', `file://${keyFile}`, '--token-audience', 'other']);
    expect(wrongAud.code).not.toBe(0);
    expect(wrongAud.stderr).toContain('token audience does not match');

    const topic = unique('auth-cli');
    const url = ['--service-url', standalone.serviceUrl];
    const produced = await strata(['produce', topic, '-m', 'one,two', ...url, '--token', token]);
    expect(produced.code).toBe(0);
    expect(`${produced.stdout}${produced.stderr}`).toContain('2 messages successfully produced');
    const tokenFile = join(dir.path, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const consumed = await strata(['consume', topic, '-s', 's', '-p', 'Earliest', '-n', '1', ...url, '--token-file', tokenFile]);
    expect(consumed.code).toBe(0);
    expect(consumed.stdout).toContain('content:one');
    const fromEnv = await strata(['admin', 'tenants', 'list', ...url], { STRATA_AUTH_TOKEN: token });
    expect(fromEnv.stdout).toContain('public');

    const refused = await strata(['produce', topic, '-m', 'x', ...url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('AuthenticationError');
    const expired = await sign({ sub: 'bob', aud: AUDIENCE, exp: now() - 5 });
    badTokens.push(expired);
    const refusedExpired = await strata(['produce', topic, '-m', 'x', ...url, '--token', expired]);
    expect(refusedExpired.stderr).toContain('token expired');
    expect(refusedExpired.stderr).not.toContain(expired);
  }, 90_000);

  it('no token, good or bad, reaches the broker\'s log', () => {
    const log = standalone.recentOutput;
    expect(log).toContain('authentication refused');
    expect(log).toContain('token expired');
    expect(badTokens.length).toBeGreaterThan(5);
    for (const token of [...badTokens, goodToken]) expect(log).not.toContain(token);
    // Nor any signature part alone (the part that would let a token be replayed if the rest leaked).
    for (const token of badTokens) {
      const signature = token.split('.')[2];
      if (signature && signature.length > 10) expect(log).not.toContain(signature);
    }
    expect(log).not.toContain(secret.toString('base64'));
  });
});

describe('strata tokens with a key pair', () => {
  it.each(['RS256', 'ES256'])('%s: create-key-pair -> create -> validate; another pair\'s key refuses it', async (alg) => {
    const files = (n: number) => ({ priv: join(dir.path, `${alg}-${n}.key`), pub: join(dir.path, `${alg}-${n}.pub`) });
    for (const n of [1, 2]) {
      const { priv, pub } = files(n);
      const made = await strata(['tokens', 'create-key-pair', '-a', alg, '--output-private-key', priv, '--output-public-key', pub]);
      expect(made.code).toBe(0);
    }
    const created = await strata(['tokens', 'create', '--subject', 'carol', '--private-key', `file://${files(1).priv}`]);
    expect(created.code).toBe(0);
    const token = created.stdout.trim();
    expect(JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString())).toEqual({ alg });
    const ok = await strata(['tokens', 'validate', token, '--public-key', `file://${files(1).pub}`]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ role: 'carol' });
    const other = await strata(['tokens', 'validate', token, '--public-key', `file://${files(2).pub}`]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('signature does not verify');
    expect(other.stderr).not.toContain(token);
  }, 60_000);
});
