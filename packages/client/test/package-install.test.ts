// @strata/client as an application gets it: `npm pack` of the built package, installed from the tarball
// into an empty project outside the workspace, then an ESM script (`import Pulsar from '@strata/client'`)
// and a CommonJS one (`require('@strata/client')`, Node's require(esm)) each send and receive a message
// through a real `strata standalone`. Needs `npm run build` first.
//
// Install scripts are skipped: zstd-napi's compiles from source (~50 s) where no prebuilt binary can be
// downloaded, and ZSTD is the one codec these scripts leave out. LZ4 and Snappy come as prebuilt
// per-platform packages, so the two scripts send with those.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StandaloneProcess, tempDir } from '@strata/runtime/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const clientDir = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Run { code: number | null; stdout: string; stderr: string }

function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  // The scripts must see the installed package only: no loader or module path from the test runner.
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  delete env.NODE_PATH;
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The body both scripts share: `Pulsar` is the package as the script's module system loaded it. */
const body = `
  const [serviceUrl, topic, compressionType] = process.argv.slice(2);
  const client = new Pulsar.Client({ serviceUrl, operationTimeoutSeconds: 10 });
  try {
    const consumer = await client.subscribe({ topic, subscription: 'pkg', subscriptionInitialPosition: 'Earliest' });
    const producer = await client.createProducer({ topic, compressionType, batchingEnabled: false });
    await producer.send({ data: Buffer.from('hello ' + compressionType), properties: { via: compressionType } });
    const message = await consumer.receive(10000);
    await consumer.acknowledge(message);
    await producer.close();
    await consumer.close();
    out.data = message.getData().toString();
    out.properties = message.getProperties();
  } finally {
    await client.close();
  }
  process.stdout.write(JSON.stringify(out));
`;

const esmScript = `import Pulsar from '@strata/client';
import { AdminApi, parseServiceUrl } from '@strata/client/admin';
const out = { hasClient: typeof Pulsar.Client === 'function' };
{
  const admin = new AdminApi(parseServiceUrl(process.argv[2]));
  try { out.tenants = await admin.listTenants(); } finally { admin.close(); }
}
${body}`;

const cjsScript = `'use strict';
const Pulsar = require('@strata/client');
const out = { hasClient: typeof Pulsar.Client === 'function', defaultIsPulsar: Pulsar.default?.Client === Pulsar.Client };
try { require.resolve('@strata/client/cli'); out.cliBlocked = false; } catch (err) { out.cliBlocked = err.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED'; }
(async () => {
${body}
})().catch((err) => { process.stderr.write(String(err && err.stack || err) + '\\n'); process.exitCode = 1; });
`;

describe('@strata/client installed from its tarball', () => {
  let dir: Awaited<ReturnType<typeof tempDir>> | undefined;
  let app = '';
  let standalone: StandaloneProcess | undefined;
  let packed: { filename: string; files: { path: string }[] };

  beforeAll(async () => {
    if (!existsSync(join(clientDir, 'dist', 'index.js'))) throw new Error('packages/client/dist is missing: run `npm run build` first');
    dir = await tempDir('strata-client-pkg-');
    const pack = await run('npm', ['pack', '--json', '--pack-destination', dir.path], clientDir, 60_000);
    if (pack.code !== 0) throw new Error(`npm pack failed:\n${pack.stderr}`);
    packed = (JSON.parse(pack.stdout) as typeof packed[])[0]!;
    app = join(dir.path, 'app');
    await mkdir(app);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'strata-client-app', version: '1.0.0', private: true }));
    const install = await run('npm', ['install', join(dir.path, packed.filename), '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '--no-package-lock'], app, 120_000);
    if (install.code !== 0) throw new Error(`npm install of the tarball failed:\n${install.stderr}`);
    await writeFile(join(app, 'esm.mjs'), esmScript);
    await writeFile(join(app, 'cjs.cjs'), cjsScript);
    standalone = await StandaloneProcess.start();
  }, 180_000);

  afterAll(async () => {
    await standalone?.stop();
    if (!process.env.STRATA_KEEP_TEST_DIRS) await dir?.remove();
  });

  it('ships its compiled protos and none of the CLI or its dependencies', async () => {
    const paths = packed.files.map((f) => f.path);
    expect(paths).toContain('dist/generated/descriptor.js');
    expect(paths).toContain('dist/admin/index.js');
    expect(paths.filter((p) => p.endsWith('.proto') || p.startsWith('src/') || p.includes('tsbuildinfo'))).toEqual([]);
    const installed = JSON.parse(await readFile(join(app, 'node_modules', '@strata', 'client', 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const cliOnly of ['commander', 'hdr-histogram-js', 'yaml']) expect(installed.dependencies).not.toHaveProperty(cliOnly);
  });

  it('import Pulsar from \'@strata/client\' sends and receives (LZ4), and the /admin subpath answers', async () => {
    const topic = `persistent://public/default/pkg-esm-${randomBytes(4).toString('hex')}`;
    const r = await run(process.execPath, ['esm.mjs', standalone!.serviceUrl, topic, 'LZ4'], app, 45_000);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ hasClient: true, tenants: expect.arrayContaining(['public']), data: 'hello LZ4', properties: { via: 'LZ4' } });
  }, 60_000);

  it('require(\'@strata/client\') sends and receives (Snappy); .default is the same Pulsar; ./cli is not exported', async () => {
    const topic = `persistent://public/default/pkg-cjs-${randomBytes(4).toString('hex')}`;
    const r = await run(process.execPath, ['cjs.cjs', standalone!.serviceUrl, topic, 'SNAPPY'], app, 45_000);
    expect(r.stderr).toBe(''); // from Node 20.19 require(esm) needs no flag and prints no warning
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ hasClient: true, defaultIsPulsar: true, cliBlocked: true, data: 'hello SNAPPY', properties: { via: 'SNAPPY' } });
  }, 60_000);
});
