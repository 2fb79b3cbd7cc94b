import type * as grpc from '@grpc/grpc-js';
import { toGrpcError, type Logger } from '@strata/runtime';

/**
 * Unary handler: the one place a thrown error becomes a gRPC status (+ domain code trailer), for the
 * Broker (transport/) and Admin (admin/) services alike. The streams answer failed requests in-band.
 */
export function unary<Req, Res>(logger: Logger, name: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request).then(
      (res) => callback(null, res),
      (err: unknown) => {
        logger.debug({ err, method: name }, 'request failed');
        callback(toGrpcError(err));
      },
    );
  };
}
