/** Small helpers for cluster tests: raw Admin calls to a broker, and polling until a condition holds. */
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '@strata/runtime';

export interface BundleInfo { namespace: string; range: string; ownerBrokerId: string; ownerUrl: string }
type Unary = (req: object, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- generated types live in the broker package
const adminProto = loadProtos<any>(['strata/broker/v1/admin.proto']);

/** One call of the broker's Admin service at `address` (host:port), with a deadline (15 s by default). */
export function adminCall<T>(address: string, method: string, req: object, timeoutMs = 15_000): Promise<T> {
  const client = new adminProto.strata.broker.v1.Admin(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Unary>;
  return new Promise<T>((resolve, reject) => {
    (client[method] as Unary).call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res as T);
    });
  });
}

/** Polls `fn` every `pollMs` until it returns something other than undefined/false (errors count as not yet). */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, pollMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
