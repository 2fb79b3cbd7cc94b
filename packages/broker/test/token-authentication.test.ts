// The broker's token provider alone (decision 0090): RS256/ES256 public keys as PEM and DER, injected
// time for exp/nbf and the clock skew, the role claim, the gate's handling of headers and /metrics, and
// the configuration checks. The end-to-end refusals are in test/token-auth.test.ts.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger, type CallCredentials, type Logger } from '@strata/runtime';
import { SignJWT } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import {
  authenticationConfigSpec, createAuthenticationGate, createTokenVerifier, parsePublicKey, parseSecretKey, tokenGate, type AuthenticationConfig,
} from '../src/security/authentication.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T0 = 1_800_000_000;
const clockAt = (seconds: number) => ({ now: () => seconds * 1000, monotonic: () => seconds * 1000 });

function credentials(headers: Record<string, string>, action: CallCredentials['action'] = 'produce'): CallCredentials {
  return { transport: 'grpc', operation: '/strata.broker.v1.Broker/Produce', action, headers: new Map(Object.entries(headers)), peerAddress: 'ipv4:127.0.0.1:1' };
}

function config(overrides: Partial<AuthenticationConfig>): AuthenticationConfig {
  const defaults = Object.fromEntries(Object.entries(authenticationConfigSpec).map(([k, f]) => [k, f.default])) as AuthenticationConfig;
  return { ...defaults, authenticationEnabled: true, authenticationProviders: ['token'], ...overrides };
}

describe('createTokenVerifier', () => {
  it.each([
    ['RS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['ES256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
  ] as const)('%s: a public key as PEM or DER verifies; a token of another key does not', async (alg, pair) => {
    const { privateKey, publicKey } = pair();
    const other = pair();
    const pem = parsePublicKey(Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string), '--token-public-key');
    const der = parsePublicKey(publicKey.export({ type: 'spki', format: 'der' }), '--token-public-key');
    const token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg }).sign(privateKey);
    for (const key of [pem, der]) expect((await createTokenVerifier({ publicKey: key }).verify(token)).role).toBe('alice');
    const foreign = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg }).sign(other.privateKey);
    await expect(createTokenVerifier({ publicKey: pem }).verify(foreign)).rejects.toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/signature/) });
    // An HS256 token "signed" with the public key's bytes (the classic confusion) is refused by algorithm.
    const confused = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(publicKey.export({ type: 'spki', format: 'der' }));
    await expect(createTokenVerifier({ publicKey: pem }).verify(confused)).rejects.toMatchObject({ message: expect.stringMatching(/algorithm not accepted/) });
  });

  it('checks exp and nbf at the injected time, with the configured skew', async () => {
    const secret = randomBytes(32);
    const token = await new SignJWT({ sub: 'a', nbf: T0, exp: T0 + 60 }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    const at = (seconds: number, skew = 0) => createTokenVerifier({ secretKey: parseSecretKey(secret), clock: clockAt(seconds), clockSkewSeconds: skew }).verify(token);
    await expect(at(T0 + 30)).resolves.toMatchObject({ role: 'a' });
    await expect(at(T0 + 61)).rejects.toMatchObject({ message: 'authentication failed: token expired' });
    await expect(at(T0 - 10)).rejects.toMatchObject({ message: 'authentication failed: token not valid yet (nbf)' });
    await expect(at(T0 + 61, 5)).resolves.toMatchObject({ role: 'a' });
    await expect(at(T0 - 3, 5)).resolves.toMatchObject({ role: 'a' });
  });

  it('takes the role from the configured claim', async () => {
    const secret = randomBytes(32);
    const token = await new SignJWT({ sub: 'ignored', role: 'ops' }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    expect((await createTokenVerifier({ secretKey: parseSecretKey(secret), roleClaim: 'role' }).verify(token)).role).toBe('ops');
    await expect(createTokenVerifier({ secretKey: parseSecretKey(secret), roleClaim: 'tenant' }).verify(token)).rejects.toMatchObject({ message: expect.stringMatching(/no "tenant" claim/) });
  });
});

describe('tokenGate', () => {
  const secret = randomBytes(32);
  const gate = tokenGate(createTokenVerifier({ secretKey: parseSecretKey(secret) }), { authenticateMetrics: false, logger: silentLogger() });

  it('reads "authorization: Bearer <jwt>" (any case of Bearer), refuses other forms', async () => {
    const token = await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).sign(secret);
    expect(await gate.authenticate(credentials({ authorization: `Bearer ${token}` }))).toEqual({ role: 'alice' });
    expect(await gate.authenticate(credentials({ authorization: `bearer  ${token}` }))).toEqual({ role: 'alice' });
    for (const [header, reason] of [[undefined, /no token/], [token, /not "Bearer <token>"/], [`Basic ${token}`, /not "Bearer/], ['Bearer', /empty token/], ['Bearer   ', /empty token/]] as const) {
      const err = await Promise.resolve(gate.authenticate(credentials(header === undefined ? {} : { authorization: header }))).then(() => undefined, (e: unknown) => e);
      expect(err).toMatchObject({ code: 'UNAUTHENTICATED', retriable: false, message: expect.stringMatching(reason) });
      expect((err as Error).message).not.toContain(token);
    }
  });

  it('/metrics is anonymous unless authenticateMetricsEndpoint; every other action needs a token', async () => {
    expect(await gate.authenticate(credentials({}, 'metrics'))).toEqual({ role: undefined });
    const strict = tokenGate(createTokenVerifier({ secretKey: parseSecretKey(secret) }), { authenticateMetrics: true, logger: silentLogger() });
    await expect(Promise.resolve(strict.authenticate(credentials({}, 'metrics')))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    for (const action of ['lookup', 'consume', 'tenant-admin', 'super-user'] as const) {
      await expect(Promise.resolve(gate.authenticate(credentials({}, action)))).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    }
  });
});

describe('createAuthenticationGate (configuration)', () => {
  const warnings: unknown[] = [];
  const logger = { ...silentLogger(), child: () => logger, warn: (obj: unknown) => void warnings.push(obj) } as unknown as Logger;

  it('is off unless enabled', async () => {
    expect(await createAuthenticationGate(config({ authenticationEnabled: false }), { logger })).toBeUndefined();
  });

  it.each<[Partial<AuthenticationConfig>, RegExp]>([
    [{ authenticationProviders: [] }, /no provider/],
    [{ authenticationProviders: ['tls'] }, /unknown provider tls/],
    [{}, /exactly one of --token-secret-key or --token-public-key/],
    [{ tokenSecretKey: 'data:;base64,AAAA', tokenPublicKey: 'file:///x' }, /exactly one/],
    [{ tokenSecretKey: '/plain/path' }, /file:\/\/\/path or data:/],
    [{ tokenSecretKey: 'file:///does/not/exist' }, /cannot read \/does\/not\/exist: ENOENT/],
    [{ tokenPublicKey: 'data:;base64,c2VjcmV0LW5vdC1hLWtleQ==' }, /not a public key/],
  ])('refuses %j', async (overrides, message) => {
    const err = await createAuthenticationGate(config(overrides), { logger }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG', message: expect.stringMatching(message) });
    // A data: key is never echoed.
    expect((err as Error).message).not.toContain('c2VjcmV0');
  });

  it('accepts Pulsar\'s provider class name, and warns on a world-readable secret key file', async () => {
    const file = join(dir, 'secret.key');
    writeFileSync(file, randomBytes(32));
    chmodSync(file, 0o644);
    const gate = await createAuthenticationGate(config({
      authenticationProviders: ['org.apache.pulsar.broker.authentication.AuthenticationProviderToken'], tokenSecretKey: `file://${file}`,
    }), { logger });
    expect(gate).toBeDefined();
    expect(warnings).toContainEqual(expect.objectContaining({ file }));
  });
});
