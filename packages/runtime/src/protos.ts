import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** Must match the flags scripts/gen-protos.mjs gives the type generator. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/**
 * Where protos/ is: STRATA_PROTOS_DIR, else the first `protos/` found walking up from this file
 * (the repository root in a checkout, the app root in the image).
 */
export function protosDir(): string {
  const fromEnv = process.env.STRATA_PROTOS_DIR;
  if (fromEnv) return fromEnv;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'protos');
    if (existsSync(join(candidate, 'strata'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the protos/ directory; set STRATA_PROTOS_DIR');
    dir = parent;
  }
}

/** Loads proto files (paths relative to protos/) into a gRPC object, typed by the caller's generated type. */
export function loadProtos<T>(files: string[]): T {
  const dir = protosDir();
  const definition = protoLoader.loadSync(files.map((f) => join(dir, f)), { ...PROTO_LOADER_OPTIONS, includeDirs: [dir] });
  return grpc.loadPackageDefinition(definition) as unknown as T;
}
