import * as grpc from '@grpc/grpc-js';
import { ClientErrorCode, configError, ERROR_CODE_METADATA_KEY } from './errors.js';

/** A token, or where to get one: called when a connection needs a token (TokenSource), and again after the broker refused one. */
export type TokenSupplier = () => string | Promise<string>;

const suppliers = new WeakMap<object, TokenSupplier>();

/**
 * pulsar-client's token authentication: `new AuthenticationToken({ token })`, where `token` is the JWT
 * or a (sync or async) function returning it. The token goes in the `authorization: Bearer <jwt>`
 * metadata of every call and stream the client makes; the broker checks it in its call gate.
 * A supplier is asked when a connection needs a token (as pulsar-client asks per connection; connections
 * opened within TOKEN_REUSE_MS of the last answer reuse it), and again after the broker refused one.
 */
export class AuthenticationToken {
  constructor(params: { token: string | TokenSupplier }) {
    if (typeof params !== 'object' || params === null) throw configError('AuthenticationToken needs { token }');
    const { token } = params;
    if (typeof token === 'string') suppliers.set(this, () => token);
    else if (typeof token === 'function') suppliers.set(this, token);
    else throw configError('AuthenticationToken token must be a string or a function returning one');
  }

  /** The token supplier of an authentication, or undefined if `auth` is not one this SDK made. */
  static supplierOf(auth: unknown): TokenSupplier | undefined {
    return typeof auth === 'object' && auth !== null ? suppliers.get(auth) : undefined;
  }
}

/** What the Client's `authentication` option accepts. */
export type Authentication = AuthenticationToken;

export const AUTHORIZATION_METADATA_KEY = 'authorization';

/**
 * How long a token asked from the supplier is reused for new connections. The official pulsar-client
 * test expects one supplier call for one createProducer on a single-broker standalone, where the
 * service URL (`localhost:6650`) and the broker's advertised address (`127.0.0.1:6650`) are two
 * connections for Strata; connections opened later (a reconnect, another broker) get a fresh token.
 */
export const TOKEN_REUSE_MS = 60_000;

/**
 * A client's tokens: asks the supplier when a connection needs one, reusing the last answer for
 * connections opened within TOKEN_REUSE_MS of it, and forgets it when the broker refused it.
 * A supplier that throws, or gives no string, rejects with the reason (never with the token).
 */
export class TokenSource {
  #pending: Promise<string> | undefined;
  #askedAt = 0;

  constructor(private readonly supplier: TokenSupplier, private readonly now: () => number = Date.now) {}

  /** The token for a connection being opened. */
  forConnection(): Promise<string> {
    if (this.#pending && this.now() - this.#askedAt < TOKEN_REUSE_MS) return this.#pending;
    return this.#ask();
  }

  /** The token in use (asks only when there is none). */
  current(): Promise<string> {
    return this.#pending ?? this.#ask();
  }

  /** The broker refused `token`: the next connection or call asks the supplier again. */
  refused(token: Promise<string>): void {
    if (this.#pending === token) this.#pending = undefined;
  }

  #ask(): Promise<string> {
    const asked = Promise.resolve()
      .then(this.supplier)
      .then((t) => {
        if (typeof t !== 'string') throw new Error('the token supplier did not return a string');
        return t;
      });
    this.#pending = asked;
    this.#askedAt = this.now();
    asked.catch(() => this.refused(asked));
    return asked;
  }
}

/**
 * The client interceptor of one connection (its Broker and Admin stubs share it): takes a token from
 * the client's TokenSource when the connection's first call starts, keeps it for the connection's later
 * calls, and drops it when a call ends UNAUTHENTICATED (the next call asks again). A supplier failure
 * ends the call as an authentication failure, in the SDK's usual form (status + domain code).
 */
export function authenticationInterceptor(source: TokenSource): grpc.Interceptor {
  let token: Promise<string> | undefined;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const mine = (token ??= source.forConnection());
        mine.then(
          (t) => {
            metadata.set(AUTHORIZATION_METADATA_KEY, `Bearer ${t}`);
            next(metadata, {
              onReceiveStatus(status, nextStatus) {
                if (status.code === grpc.status.UNAUTHENTICATED) {
                  source.refused(mine);
                  if (token === mine) token = undefined;
                }
                nextStatus(status);
              },
            });
          },
          (err: unknown) => {
            if (token === mine) token = undefined;
            const trailer = new grpc.Metadata();
            trailer.set(ERROR_CODE_METADATA_KEY, ClientErrorCode.AUTHENTICATION);
            const why = err instanceof Error ? err.message : String(err);
            listener.onReceiveStatus({ code: grpc.status.UNAUTHENTICATED, details: `the token supplier failed: ${why}`, metadata: trailer });
          },
        );
      },
    });
}
