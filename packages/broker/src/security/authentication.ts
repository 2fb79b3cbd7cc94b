import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ConfigError, ErrorCode, field, StrataError, systemClock, type CallGate, type Clock, type ConfigValues, type Logger, type Principal } from '@strata/runtime';
import { jwtVerify, type JWTPayload } from 'jose';

/**
 * Token (JWT) authentication of every call the broker takes, through its call gate (decisions 0087,
 * 0090). Pulsar's names: `authenticationEnabled`, `authenticationProviders`, `tokenSecretKey` (HS256),
 * `tokenPublicKey` (RS256 / ES256), `tokenAuthClaim`, `tokenAudience`, `tokenAllowedClockSkewSeconds`,
 * `authenticateMetricsEndpoint`. Verification is `jose`'s; nothing here signs or checks a signature.
 *
 * Secrets hygiene: no token, key or key-file content goes into a log line or an error message. Errors
 * name the check that failed ("token expired"), never the token; a `data:` key is never echoed.
 */
export const authenticationConfigSpec = {
  authenticationEnabled: field.boolean(false, 'authenticate every gRPC call and HTTP request (except /healthz, /readyz; /metrics see authenticateMetricsEndpoint)'),
  authenticationProviders: field.list([], 'authentication providers, as Pulsar\'s authenticationProviders: token (AuthenticationProviderToken)'),
  tokenSecretKey: field.string('', 'token provider, HS256: the secret key, file:///path (raw bytes) or data:;base64,<key>'),
  tokenPublicKey: field.string('', 'token provider, RS256/ES256: the public key, file:///path (PEM or DER) or data:;base64,<DER>'),
  tokenAuthClaim: field.string('sub', 'token provider: the claim that names the role'),
  tokenAudience: field.string('', 'token provider: when set, a token\'s "aud" claim must contain this value'),
  tokenAllowedClockSkewSeconds: field.int(0, 'token provider: leeway on exp and nbf', { min: 0, max: 3600 }),
  authenticateMetricsEndpoint: field.boolean(false, 'with authentication on, /metrics needs a token too (Pulsar\'s default: it does not)'),
};
export type AuthenticationConfig = ConfigValues<typeof authenticationConfigSpec>;

/** The provider names accepted for the token provider: Pulsar's short name and its class name. */
const TOKEN_PROVIDER_NAMES: ReadonlySet<string> = new Set(['token', 'org.apache.pulsar.broker.authentication.AuthenticationProviderToken']);

/** A verified token: the role it names and its claims. */
export interface VerifiedToken {
  readonly role: string;
  readonly claims: JWTPayload;
}

export interface TokenVerifierOptions {
  /** HS256/384/512: the shared secret. Exactly one of secretKey, publicKey. */
  readonly secretKey?: KeyObject;
  /** RS256/384/512 (RSA key) or ES256/384/512 (EC key). */
  readonly publicKey?: KeyObject;
  /** The claim naming the role; default `sub`. */
  readonly roleClaim?: string;
  /** When set, `aud` must contain it. */
  readonly audience?: string;
  readonly clockSkewSeconds?: number;
  readonly clock?: Clock;
}

export interface TokenVerifier {
  /** Resolves with the role; rejects with a StrataError UNAUTHENTICATED whose message names the check that failed. */
  verify(token: string): Promise<VerifiedToken>;
}

/** The signing algorithms a key accepts: its family only, so a token cannot pick another (`none`, HS with a public key). */
export function algorithmsFor(key: KeyObject): string[] {
  if (key.type === 'secret') return ['HS256', 'HS384', 'HS512'];
  if (key.asymmetricKeyType === 'rsa') return ['RS256', 'RS384', 'RS512'];
  if (key.asymmetricKeyType === 'ec') return ['ES256', 'ES384', 'ES512'];
  throw new StrataError(ErrorCode.CONFIG, `unsupported token key type ${key.asymmetricKeyType ?? key.type} (need an HMAC secret, RSA or EC key)`, { retriable: false });
}

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const key = options.secretKey ?? options.publicKey;
  if (!key || (options.secretKey && options.publicKey)) throw new StrataError(ErrorCode.CONFIG, 'a token verifier needs exactly one of a secret key or a public key', { retriable: false });
  const algorithms = algorithmsFor(key);
  const roleClaim = options.roleClaim || 'sub';
  const clock = options.clock ?? systemClock;
  return {
    async verify(token) {
      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(token, key, {
          algorithms,
          currentDate: new Date(clock.now()),
          clockTolerance: options.clockSkewSeconds ?? 0,
          ...(options.audience ? { audience: options.audience } : {}),
        }));
      } catch (err) {
        throw unauthenticated(reasonOf(err));
      }
      const role = claims[roleClaim];
      if (typeof role !== 'string' || role === '') throw unauthenticated(`token has no "${roleClaim}" claim naming a role`);
      return { role, claims };
    },
  };
}

/** What failed, in words that carry nothing of the token (jose's codes, not its messages). */
function reasonOf(err: unknown): string {
  const e = err as { code?: unknown; claim?: unknown };
  switch (e.code) {
    case 'ERR_JWT_EXPIRED': return 'token expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (e.claim === 'nbf') return 'token not valid yet (nbf)';
      if (e.claim === 'aud') return 'token audience does not match';
      if (e.claim === 'iat') return 'token issued in the future (iat)';
      return 'token claims invalid';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'token signature does not verify with the broker\'s key';
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'token signing algorithm not accepted by the broker\'s key';
    case 'ERR_JOSE_NOT_SUPPORTED': return 'token signing algorithm not supported';
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID': return 'token is not a valid JWT';
    default: return 'token rejected';
  }
}

function unauthenticated(reason: string): StrataError {
  return new StrataError(ErrorCode.UNAUTHENTICATED, `authentication failed: ${reason}`, { retriable: false });
}

/**
 * Reads a key named as Pulsar names it: `file:///abs/path` or `data:;base64,<bytes>`. `flag` names the
 * setting in errors; the key itself never appears in one.
 */
export async function readKeyBytes(url: string, flag: string): Promise<{ bytes: Buffer; file?: string }> {
  if (url.startsWith('data:')) {
    const comma = url.indexOf(',');
    if (comma < 0 || !/;base64$/.test(url.slice(0, comma))) throw new ConfigError(flag, 'a data: key must be data:;base64,<key>');
    const bytes = Buffer.from(url.slice(comma + 1), 'base64');
    if (bytes.length === 0) throw new ConfigError(flag, 'the data: key is empty');
    return { bytes };
  }
  if (!url.startsWith('file:')) throw new ConfigError(flag, 'expected file:///path or data:;base64,<key>');
  let file: string;
  try {
    file = fileURLToPath(url);
  } catch {
    throw new ConfigError(flag, 'expected file:///absolute/path');
  }
  try {
    const bytes = await readFile(file);
    if (bytes.length === 0) throw new ConfigError(flag, `${file} is empty`);
    return { bytes, file };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(flag, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** A public key from PEM (SPKI, or an X.509 certificate) or DER (SPKI, as `pulsar tokens create-key-pair` writes). */
export function parsePublicKey(bytes: Buffer, flag: string): KeyObject {
  try {
    const text = bytes.toString('utf8');
    return text.includes('-----BEGIN') ? createPublicKey(text) : createPublicKey({ key: bytes, format: 'der', type: 'spki' });
  } catch {
    throw new ConfigError(flag, 'not a public key (expected PEM or DER SubjectPublicKeyInfo)');
  }
}

/** The secret key as it is in the file (raw bytes; `create-secret-key --base64` output goes in a data: URL). */
export function parseSecretKey(bytes: Buffer): KeyObject {
  return createSecretKey(bytes);
}

/** Warns when a file holding a secret can be read by anyone (issue 15, secrets hygiene). */
async function warnIfWorldReadable(file: string | undefined, logger: Logger): Promise<void> {
  if (!file) return;
  const mode = (await stat(file)).mode;
  if ((mode & 0o004) !== 0) logger.warn({ file, mode: (mode & 0o777).toString(8) }, 'secret key file is world-readable: chmod 600 it');
}

/**
 * The broker's call gate from its configuration (decision 0090), or undefined with authentication off.
 * Authorization is not built yet: an authenticated role may do anything.
 */
export async function createAuthenticationGate(config: AuthenticationConfig, deps: { logger: Logger; clock?: Clock }): Promise<CallGate | undefined> {
  if (!config.authenticationEnabled) return undefined;
  const providers = config.authenticationProviders;
  if (providers.length === 0) throw new ConfigError('--authentication-providers', 'authentication is enabled but no provider is named (token)');
  const unknown = providers.filter((p) => !TOKEN_PROVIDER_NAMES.has(p));
  if (unknown.length > 0) throw new ConfigError('--authentication-providers', `unknown provider ${unknown.join(', ')} (supported: token)`);
  if (!config.tokenSecretKey === !config.tokenPublicKey) {
    throw new ConfigError('--token-secret-key', 'the token provider needs exactly one of --token-secret-key or --token-public-key');
  }
  let key: { secretKey: KeyObject } | { publicKey: KeyObject };
  if (config.tokenSecretKey) {
    const { bytes, file } = await readKeyBytes(config.tokenSecretKey, '--token-secret-key');
    await warnIfWorldReadable(file, deps.logger);
    key = { secretKey: parseSecretKey(bytes) };
  } else {
    const { bytes } = await readKeyBytes(config.tokenPublicKey, '--token-public-key');
    key = { publicKey: parsePublicKey(bytes, '--token-public-key') };
  }
  const verifier = createTokenVerifier({
    ...key, roleClaim: config.tokenAuthClaim, audience: config.tokenAudience || undefined,
    clockSkewSeconds: config.tokenAllowedClockSkewSeconds, clock: deps.clock,
  });
  const log = deps.logger.child({ component: 'authentication' });
  log.info({ providers, key: config.tokenSecretKey ? 'secret' : 'public', metrics: config.authenticateMetricsEndpoint }, 'token authentication on');
  return tokenGate(verifier, { authenticateMetrics: config.authenticateMetricsEndpoint, logger: log });
}

const ANONYMOUS: Principal = { role: undefined };

/** A gate that authenticates with a bearer token and admits every authenticated role (no authorization yet). */
export function tokenGate(verifier: TokenVerifier, options: { authenticateMetrics: boolean; logger: Logger }): CallGate {
  return {
    authenticate: async (credentials) => {
      if (credentials.action === 'metrics' && !options.authenticateMetrics) return ANONYMOUS;
      try {
        const header = credentials.headers.get('authorization');
        if (header === undefined) throw unauthenticated('no token: send "authorization: Bearer <token>"');
        const match = /^Bearer(?: +(.*))?$/i.exec(header.trim());
        if (!match) throw unauthenticated('the authorization header is not "Bearer <token>"');
        const token = (match[1] ?? '').trim();
        if (token === '') throw unauthenticated('empty token');
        const { role } = await verifier.verify(token);
        return { role };
      } catch (err) {
        const e = err instanceof StrataError ? err : unauthenticated('token rejected');
        // Only the fixed reason and where the call came from: never the header.
        options.logger.info({ operation: credentials.operation, peer: credentials.peerAddress, reason: e.message }, 'authentication refused');
        throw e;
      }
    },
    authorize: () => undefined,
  };
}
