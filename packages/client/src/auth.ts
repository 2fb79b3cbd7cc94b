import * as grpc from '@grpc/grpc-js';
import { ClientErrorCode, configError, ERROR_CODE_METADATA_KEY } from './errors.js';

/** A token, or where to get one: called when a connection is made, and again after the broker refused the last one. */
export type TokenSupplier = () => string | Promise<string>;

const suppliers = new WeakMap<object, TokenSupplier>();

/**
 * pulsar-client's token authentication: `new AuthenticationToken({ token })`, where `token` is the JWT
 * or a (sync or async) function returning it. The token goes in the `authorization: Bearer <jwt>`
 * metadata of every call and stream the client makes; the broker checks it in its call gate.
 * A supplier is asked once per connection (as pulsar-client does), and again on that connection after
 * the broker refused a token (so a refreshed one is picked up without a new client).
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
 * The client interceptor of one connection (its Broker and Admin stubs share it): asks the supplier for
 * a token when the first call starts, keeps it for the connection's later calls, and forgets it when a
 * call ends UNAUTHENTICATED. A supplier that throws (or gives no string) ends the call as an
 * authentication failure, in the SDK's usual form (status + domain code), never with the token in it.
 */
export function authenticationInterceptor(supplier: TokenSupplier): grpc.Interceptor {
  let token: Promise<string> | undefined;
  const current = (): Promise<string> => {
    token ??= Promise.resolve()
      .then(supplier)
      .then((t) => {
        if (typeof t !== 'string') throw new Error('the token supplier did not return a string');
        return t;
      });
    const mine = token;
    mine.catch(() => {
      if (token === mine) token = undefined;
    });
    return mine;
  };
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        current().then(
          (t) => {
            metadata.set(AUTHORIZATION_METADATA_KEY, `Bearer ${t}`);
            next(metadata, {
              onReceiveStatus(status, nextStatus) {
                if (status.code === grpc.status.UNAUTHENTICATED) token = undefined;
                nextStatus(status);
              },
            });
          },
          (err: unknown) => {
            const trailer = new grpc.Metadata();
            trailer.set(ERROR_CODE_METADATA_KEY, ClientErrorCode.AUTHENTICATION);
            const why = err instanceof Error ? err.message : String(err);
            listener.onReceiveStatus({ code: grpc.status.UNAUTHENTICATED, details: `the token supplier failed: ${why}`, metadata: trailer });
          },
        );
      },
    });
}
