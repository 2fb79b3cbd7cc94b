/**
 * `strata tokens`, as `pulsar tokens`: make a secret key or a key pair, create a token for a role,
 * show a token's header and claims, validate one against a key. Keys are read and written as Pulsar's
 * tools do (secret keys raw or base64; key pairs DER, PKCS#8 private and SubjectPublicKeyInfo public;
 * PEM is accepted on read), so keys made by either tool work with both. Signing and verification are
 * `jose`'s; key generation is node's crypto. Validation uses the broker's own verifier, so it says
 * exactly what the broker would.
 *
 * Secrets hygiene: a key never appears in an error message; a token only in what the user asked for
 * (`create` prints it, `show` prints its content).
 */
import { createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { UsageError } from './errors.js';
import type { CliIo } from './io.js';

type Wrap = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;

const SECRET_KEY_BYTES: Record<string, number> = { HS256: 32, HS384: 48, HS512: 64 };
const EC_CURVES: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };
const ALG_OF_CURVE: Record<string, string> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

/** `1h`, `30m`, `7d`, `1y`, `90s` (Pulsar's forms) or plain seconds, as seconds. */
export function parseExpiry(value: string): number {
  const m = /^(\d+)\s*([smhdwy]?)$/i.exec(value.trim());
  if (!m) throw new UsageError(`--expiry-time must be like 30s, 10m, 1h, 7d, 2w or 1y, got '${value}'`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800, y: 31_536_000 }[(m[2] ?? '').toLowerCase()]!;
  const seconds = Number(m[1]) * unit;
  if (!(seconds > 0) || !Number.isSafeInteger(seconds)) throw new UsageError(`--expiry-time must be > 0, got '${value}'`);
  return seconds;
}

function writeSecret(path: string, data: Buffer | string): void {
  try {
    writeFileSync(path, data, { mode: 0o600 });
  } catch (err) {
    throw new UsageError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

/** A private key from `file:///path` or `data:;base64,` (PKCS#8 DER, or PEM). */
async function readPrivateKey(url: string): Promise<KeyObject> {
  const { readKeyBytes } = await import('@strata/broker');
  const { bytes } = await readKeyBytes(url, '--private-key');
  try {
    const text = bytes.toString('utf8');
    return text.includes('-----BEGIN') ? createPrivateKey(text) : createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
  } catch {
    throw new UsageError('--private-key: not a private key (expected PKCS#8 DER or PEM)');
  }
}

/** The token to show or validate: the argument, `--token-file`, or `--stdin`. */
function tokenInput(arg: string | undefined, flags: { tokenFile?: string; stdin?: boolean }): string {
  let token: string | undefined = arg;
  if (flags.tokenFile !== undefined) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${flags.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
  } else if (flags.stdin) {
    token = readFileSync(0, 'utf8');
  }
  token = token?.trim();
  if (!token) throw new UsageError('give the token as an argument, with --token-file <file>, or on stdin with -i');
  return token;
}

export function registerTokenCommands(program: Command, io: CliIo, command: Wrap): void {
  const tokens = program.command('tokens').description('Create keys and tokens for token authentication (like pulsar tokens)');

  tokens.command('create-secret-key')
    .description('Create a secret key (HS256 by default) for --token-secret-key')
    .option('-a, --signature-algorithm <alg>', 'HS256, HS384 or HS512', 'HS256')
    .option('-o, --output <file>', 'write the key to this file (mode 600) instead of stdout')
    .option('-b, --base64', 'base64-encode the key (for data:;base64,<key>)')
    .action(command(async (flags: { signatureAlgorithm: string; output?: string; base64?: boolean }) => {
      const size = SECRET_KEY_BYTES[flags.signatureAlgorithm.toUpperCase()];
      if (!size) throw new UsageError(`--signature-algorithm must be HS256, HS384 or HS512, got '${flags.signatureAlgorithm}'`);
      const key = randomBytes(size);
      const data = flags.base64 ? key.toString('base64') : key;
      if (flags.output) writeSecret(flags.output, data);
      else io.write(data);
    }));

  tokens.command('create-key-pair')
    .description('Create a private/public key pair (RS256 by default) for --private-key and --token-public-key')
    .option('-a, --signature-algorithm <alg>', 'RS256, RS384, RS512, ES256, ES384 or ES512', 'RS256')
    .requiredOption('--output-private-key <file>', 'file for the private key (PKCS#8 DER, mode 600)')
    .requiredOption('--output-public-key <file>', 'file for the public key (SubjectPublicKeyInfo DER)')
    .action(command(async (flags: { signatureAlgorithm: string; outputPrivateKey: string; outputPublicKey: string }) => {
      const alg = flags.signatureAlgorithm.toUpperCase();
      let pair: { privateKey: KeyObject; publicKey: KeyObject };
      if (/^RS(256|384|512)$/.test(alg)) pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      else if (EC_CURVES[alg]) pair = generateKeyPairSync('ec', { namedCurve: EC_CURVES[alg] });
      else throw new UsageError(`--signature-algorithm must be one of RS256, RS384, RS512, ES256, ES384, ES512, got '${flags.signatureAlgorithm}'`);
      writeSecret(flags.outputPrivateKey, pair.privateKey.export({ type: 'pkcs8', format: 'der' }));
      writeFileSync(flags.outputPublicKey, pair.publicKey.export({ type: 'spki', format: 'der' }));
    }));

  tokens.command('create')
    .description('Create a token for a role, signed with a secret key or a private key; prints it')
    .requiredOption('-s, --subject <role>', 'the role (the "sub" claim)')
    .option('-e, --expiry-time <time>', 'expire after this long: 30s, 10m, 1h, 7d, 1y (default: never)')
    .option('--secret-key <url>', 'file:///path or data:;base64,<key> (HS256/384/512)')
    .option('--private-key <url>', 'file:///path or data:;base64,<key> (RS*/ES*)')
    .option('-a, --signature-algorithm <alg>', 'default HS256 with a secret key, RS256 or ES256/384/512 (by curve) with a private key')
    .option('--audience <aud>', 'Strata extension: set the "aud" claim (for brokers with --token-audience)')
    .action(command(async (flags: { subject: string; expiryTime?: string; secretKey?: string; privateKey?: string; signatureAlgorithm?: string; audience?: string }) => {
      if (!flags.secretKey === !flags.privateKey) throw new UsageError('give exactly one of --secret-key or --private-key');
      if (flags.subject.trim() === '') throw new UsageError('--subject must not be empty');
      const { algorithmsFor, parseSecretKey, readKeyBytes } = await import('@strata/broker');
      let key: KeyObject;
      let alg: string;
      if (flags.secretKey) {
        key = parseSecretKey((await readKeyBytes(flags.secretKey, '--secret-key')).bytes);
        alg = 'HS256';
      } else {
        key = await readPrivateKey(flags.privateKey!);
        alg = key.asymmetricKeyType === 'ec' ? ALG_OF_CURVE[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'ES256' : 'RS256';
      }
      if (flags.signatureAlgorithm) alg = flags.signatureAlgorithm.toUpperCase();
      const allowed = algorithmsFor(key);
      if (!allowed.includes(alg)) throw new UsageError(`--signature-algorithm ${alg} does not fit this key (use ${allowed.join(', ')})`);
      let jwt = new SignJWT({}).setProtectedHeader({ alg }).setSubject(flags.subject);
      if (flags.expiryTime !== undefined) jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + parseExpiry(flags.expiryTime));
      if (flags.audience) jwt = jwt.setAudience(flags.audience);
      io.out(await jwt.sign(key));
    }));

  tokens.command('show')
    .description('Show a token\'s header and claims (no validation)')
    .argument('[token]', 'the token')
    .option('-f, --token-file <file>', 'read the token from a file')
    .option('-i, --stdin', 'read the token from stdin')
    .action(command(async (arg: string | undefined, flags: { tokenFile?: string; stdin?: boolean }) => {
      const token = tokenInput(arg, flags);
      let header: unknown;
      let claims: unknown;
      try {
        header = decodeProtectedHeader(token);
        claims = decodeJwt(token);
      } catch {
        throw new UsageError('not a JWT');
      }
      io.out(JSON.stringify(header));
      io.out('---');
      io.out(JSON.stringify(claims));
    }));

  tokens.command('validate')
    .description('Check a token against a key as a broker would (signature, exp, nbf, audience); prints its claims')
    .argument('[token]', 'the token')
    .option('-f, --token-file <file>', 'read the token from a file')
    .option('-i, --stdin', 'read the token from stdin')
    .option('--secret-key <url>', 'file:///path or data:;base64,<key>')
    .option('--public-key <url>', 'file:///path or data:;base64,<key> (DER or PEM)')
    .option('--token-auth-claim <claim>', 'the claim naming the role', 'sub')
    .option('--token-audience <aud>', 'the audience the token must name')
    .action(command(async (arg: string | undefined, flags: {
      tokenFile?: string; stdin?: boolean; secretKey?: string; publicKey?: string; tokenAuthClaim: string; tokenAudience?: string;
    }) => {
      if (!flags.secretKey === !flags.publicKey) throw new UsageError('give exactly one of --secret-key or --public-key');
      const token = tokenInput(arg, flags);
      const { createTokenVerifier, parsePublicKey, parseSecretKey, readKeyBytes } = await import('@strata/broker');
      const key = flags.secretKey
        ? { secretKey: parseSecretKey((await readKeyBytes(flags.secretKey, '--secret-key')).bytes) }
        : { publicKey: parsePublicKey((await readKeyBytes(flags.publicKey!, '--public-key')).bytes, '--public-key') };
      const verifier = createTokenVerifier({ ...key, roleClaim: flags.tokenAuthClaim, ...(flags.tokenAudience ? { audience: flags.tokenAudience } : {}) });
      const { role, claims } = await verifier.verify(token);
      io.out(JSON.stringify({ role, claims }));
    }));
}
