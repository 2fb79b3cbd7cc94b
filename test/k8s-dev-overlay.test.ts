// Runs the dev overlay's pods as containers, as the kubelet would run them: the rendered image, command,
// args, environment (ConfigMaps, downward API, $(VAR) expansion), ConfigMap files, volumes, user and
// readiness probe of each pod, on one Docker network where the pods' DNS names (etcd-0.etcd,
// bookie-0.bookie.strata-dev.svc, the Services) are network aliases. Then a message goes through the
// `broker` Service. This is what test/k8s-manifests.test.ts cannot show offline: that the manifests'
// configuration really starts etcd and every role, ready, and that they form a working cluster.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { GenericContainer, Network, Wait, type StartedNetwork, type StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arr, containerEnv, matches, nameOf, obj, podLabels, podSpec, portOf, render, root, str, type Obj, type Rendered } from './k8s/render.js';

process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';

const run = (cmd: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(cmd, args, { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, ...env } });
const dockerUp = run('docker', ['info']).status === 0;
const kubectlUp = run('kubectl', ['version', '--client']).status === 0;
const binRuns = run('node', ['packages/cli/dist/bin.js', '--help']).status === 0;
const skip = !dockerUp
  ? 'no Docker engine answers `docker info` (bash scripts/setup.sh starts one)'
  : !kubectlUp
    ? 'kubectl is not installed'
    : !binRuns
      ? '`node packages/cli/dist/bin.js --help` does not run yet (npm run build)'
      : '';
if (skip) console.warn(`SKIPPED test/k8s-dev-overlay.test.ts: ${skip}`);

describe.skipIf(skip !== '')('the dev overlay, run as containers', () => {
  const id = `k8s-dev-${randomUUID().slice(0, 8)}`;
  const started: StartedTestContainer[] = [];
  const dirs: string[] = [];
  let network: StartedNetwork | undefined;
  let r: Rendered;
  let toolbox: StartedTestContainer;

  /** Starts pod 0 of a workload the way the kubelet would; `podIP` stands in for status.podIP. */
  async function startPod(w: Obj): Promise<StartedTestContainer> {
    const name = nameOf(w);
    const pod = w.kind === 'StatefulSet' ? `${name}-0` : `${name}-pod`;
    const podIP = `${pod}-ip`;
    const spec = podSpec(w);
    const c = arr(spec.containers)[0]!;
    const env = containerEnv(r, c, pod, podIP);
    // The DNS names that reach this pod in Kubernetes.
    const aliases = new Set([pod, podIP]);
    const serviceName = str(obj(w.spec).serviceName);
    if (serviceName) for (const a of [`${pod}.${serviceName}`, `${pod}.${serviceName}.${r.namespace}.svc`]) aliases.add(a);
    for (const s of r.byKind('Service')) {
      if (matches(obj(obj(s.spec).selector), podLabels(w))) for (const a of [nameOf(s), `${nameOf(s)}.${r.namespace}.svc`]) aliases.add(a);
    }
    let container = new GenericContainer(str(c.image))
      .withName(`${id}-${pod}`)
      .withNetwork(network!)
      .withNetworkAliases(...aliases)
      .withLabels({ 'strata.cluster': id, 'strata.role': name })
      .withEnvironment(env);
    if (Array.isArray(c.command)) container = container.withEntrypoint(c.command.map(str));
    if (Array.isArray(c.args)) container = container.withCommand(c.args.map(str));
    const sc = obj(spec.securityContext);
    if (sc.runAsUser !== undefined) container = container.withUser(`${String(sc.runAsUser)}:${String(sc.runAsGroup ?? sc.runAsUser)}`);
    const claims = arr(obj(w.spec).volumeClaimTemplates).map(nameOf);
    const volumes = arr(spec.volumes);
    for (const m of arr(c.volumeMounts)) {
      const mountPath = str(m.mountPath);
      const volume = volumes.find((v) => v.name === m.name);
      if (claims.includes(str(m.name))) {
        const dir = mkdtempSync(join(tmpdir(), `${id}-${pod}-`));
        chmodSync(dir, 0o777); // what fsGroup does for the pod's user
        dirs.push(dir);
        container = container.withBindMounts([{ source: dir, target: mountPath, mode: 'rw' }]);
      } else if (volume?.configMap) {
        const data = obj(r.get('ConfigMap', str(obj(volume.configMap).name)).data);
        container = container.withCopyContentToContainer(
          Object.entries(data).map(([key, content]) => ({ content: str(content), target: `${mountPath}/${key}`, mode: 0o644 })),
        );
      } else if (volume?.emptyDir) {
        container = container.withTmpFs({ [mountPath]: `rw,uid=${String(sc.runAsUser ?? 0)}` });
      } else {
        throw new Error(`${name}: volume ${str(m.name)} not modelled by the test`);
      }
    }
    const probe = obj(obj(c.readinessProbe).httpGet);
    const probePort = portOf(c, probe.port ?? null);
    const handle = await container
      .withExposedPorts(probePort)
      .withWaitStrategy(Wait.forHttp(str(probe.path), probePort).forStatusCode(200))
      .withStartupTimeout(60_000)
      .start();
    started.push(handle);
    return handle;
  }

  beforeAll(async () => {
    const built = run('bash', ['scripts/build-image.sh']);
    if (built.status !== 0) throw new Error(`scripts/build-image.sh failed:\n${built.stderr}`);
    r = render('dev');
    network = await new Network().start();
    // In dependency order, one pod each (the dev overlay's replicas).
    for (const name of ['etcd', 'coordinator', 'bookie', 'broker']) {
      const w = [...r.byKind('StatefulSet'), ...r.byKind('Deployment')].find((x) => nameOf(x) === name);
      if (!w) throw new Error(`dev overlay has no ${name}`);
      await startPod(w);
    }
    toolbox = await new GenericContainer('strata:dev')
      .withName(`${id}-toolbox`)
      .withNetwork(network)
      .withLabels({ 'strata.cluster': id, 'strata.role': 'drill' })
      .withEntrypoint(['/usr/bin/node'])
      .withCommand(['-e', 'setInterval(() => {}, 1 << 30)'])
      .start();
    started.push(toolbox);
  }, 240_000);

  afterAll(async () => {
    await Promise.allSettled(started.map((c) => c.stop({ timeout: 5_000, remove: true })));
    await network?.stop().catch(() => undefined);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const strata = (...args: string[]) => {
    const out = spawnSync('docker', ['exec', toolbox.getId(), '/usr/bin/node', '/app/packages/cli/dist/bin.js', ...args, '--service-url', 'pulsar://broker:6650'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: out.status, stdout: out.stdout ?? '', stderr: out.stderr ?? '' };
  };

  it('starts etcd and every role from the rendered pods, ready on their probes', () => {
    expect(started.map((c) => c.getName().replace(`/${id}-`, ''))).toEqual(['etcd-0', 'coordinator-pod', 'bookie-0', 'broker-pod', 'toolbox']);
  });

  it('carries a message through the broker Service', () => {
    const topic = `persistent://public/default/${id}`;
    const produced = strata('produce', topic, '-m', 'hello-from-dev-overlay');
    expect(produced.stderr).toBe('');
    expect(produced.status).toBe(0);
    const consumed = strata('consume', topic, '-s', 'check', '-p', 'Earliest', '-n', '1');
    expect(consumed.status, consumed.stderr).toBe(0);
    expect(consumed.stdout).toContain('hello-from-dev-overlay');
  });
});
