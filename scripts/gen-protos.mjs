#!/usr/bin/env node
// Generates TypeScript types from protos/ for the packages that use them (proto-loader-gen-types).
// The output is build output: it is gitignored and rebuilt by `npm run build`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const protos = join(root, 'protos');

// Which protos each package compiles against. The client sees only the client-facing protos.
const targets = {
  runtime: ['grpc/health/v1/health.proto'],
  bookie: ['strata/bookie/v1/bookie.proto'],
  broker: ['strata/broker/v1/broker.proto', 'strata/broker/v1/admin.proto', 'strata/broker/v1/messages.proto'],
  coordinator: ['strata/coordinator/v1/coordinator.proto'],
  client: ['strata/broker/v1/broker.proto', 'strata/broker/v1/admin.proto', 'strata/broker/v1/messages.proto'],
};

const bin = join(root, 'node_modules', '@grpc', 'proto-loader', 'build', 'bin', 'proto-loader-gen-types.js');
for (const [pkg, files] of Object.entries(targets)) {
  const outDir = join(root, 'packages', pkg, 'src', 'generated');
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  // These options must match PROTO_LOADER_OPTIONS in each package's protos.ts.
  execFileSync(process.execPath, [
    bin, '--grpcLib=@grpc/grpc-js', '--longs=Number', '--enums=String', '--defaults', '--oneofs',
    '--includeComments', '-I', protos, '-O', outDir, ...files,
  ], { stdio: 'inherit' });
  addJsExtensions(outDir);
}

// The generator writes extensionless relative imports; NodeNext ESM resolution needs `.js`.
function addJsExtensions(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) addJsExtensions(path);
    else if (entry.name.endsWith('.ts')) {
      const text = readFileSync(path, 'utf8').replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.js'");
      writeFileSync(path, text);
    }
  }
}
