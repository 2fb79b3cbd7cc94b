// Renders every kustomize overlay under deploy/k8s/overlays offline and checks what a cluster would
// reject or silently get wrong: schema errors (kubernetes-models' validators, generated from the
// Kubernetes OpenAPI schema), unknown fields (which the API server drops or refuses, depending on its
// field validation mode), and a mismatch between the manifests and what the roles really serve: the
// role's config is loaded from the container's args, env and mounted ConfigMap through the role's own
// config spec, exactly as `strata <role>` would, and ports, probes and addresses are compared with it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { loadConfig, type ConfigSpec } from '@strata/runtime';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  arr, containerEnv, isObj, nameOf, obj, overlaysDir, podAnnotations, podLabels, podSpec, portOf, render, str, workloads, matches,
  type Obj, type Rendered,
} from './k8s/render.js';

const overlays = readdirSync(overlaysDir);

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = kubectl.status === 0;
if (!haveKubectl) console.warn('SKIPPED test/k8s-manifests.test.ts: kubectl is not installed (it renders the kustomize overlays offline)');

// ---------------------------------------------------------------------------------------------------

interface Model {
  prototype: { validate(): void };
  new (data: never): { validate(): void };
}
const models: Record<string, Model> = {
  'v1/Namespace': Namespace as unknown as Model,
  'v1/ConfigMap': ConfigMap as unknown as Model,
  'v1/Service': Service as unknown as Model,
  'apps/v1/Deployment': Deployment as unknown as Model,
  'apps/v1/StatefulSet': StatefulSet as unknown as Model,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as Model,
};

function modelFor(doc: Obj): Model {
  const model = models[`${str(doc.apiVersion)}/${str(doc.kind)}`];
  if (!model) throw new Error(`no model for ${str(doc.apiVersion)} ${str(doc.kind)}: add it to the test`);
  return model;
}

/**
 * Unknown fields, found with the schema's own validator: it reads every property the schema defines
 * (and every entry of a map), so a key that it never read is one the schema does not know. Runs the
 * validator over a proxy that records reads, then walks the document.
 */
function unknownFields(model: Model, doc: Obj): string[] {
  const reads = new WeakMap<object, Set<string>>();
  const proxies = new WeakMap<object, object>();
  const wrap = (value: unknown): unknown => {
    if (typeof value !== 'object' || value === null) return value;
    let proxy = proxies.get(value);
    if (!proxy) {
      const seen = new Set<string>();
      reads.set(value, seen);
      proxy = new Proxy(value, {
        get(target, key, receiver) {
          if (typeof key === 'string') seen.add(key);
          return wrap(Reflect.get(target, key, receiver));
        },
      });
      proxies.set(value, proxy);
    }
    return proxy;
  };
  try {
    model.prototype.validate.call(wrap(doc) as never);
  } catch {
    // Schema errors are reported by the schema check; here only the reads matter.
  }
  const unknown: string[] = [];
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${path}[${i}]`));
    if (!isObj(value)) return;
    const seen = reads.get(value);
    if (!seen) return; // never reached: its parent key is already reported, or it is free-form
    for (const key of Object.keys(value)) {
      if (!seen.has(key)) unknown.push(`${path}.${key}`);
      else walk(value[key], `${path}.${key}`);
    }
  };
  walk(doc, str(doc.kind));
  return unknown;
}

function schemaErrors(model: Model, doc: Obj): string {
  try {
    new model(structuredClone(doc) as never).validate();
    return '';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

// ---------------------------------------------------------------------------------------------------
// The roles' config specs, from the built packages (npm run build): the manifests are checked against
// what the roles really parse, and the roles' default ports against DESIGN.md.
type RoleName = 'broker' | 'bookie' | 'coordinator';
const designPorts: Record<RoleName, { grpc: number; http: number }> = {
  broker: { grpc: 6650, http: 8080 },
  bookie: { grpc: 3181, http: 8000 },
  coordinator: { grpc: 6660, http: 8090 },
};

async function roleSpec(role: RoleName): Promise<ConfigSpec> {
  const mod = (await import(`@strata/${role}`)) as Record<string, unknown>;
  const spec = mod[`${role}ConfigSpec`];
  if (!isObj(spec)) throw new Error(`@strata/${role} does not export ${role}ConfigSpec (build the packages: npm run build)`);
  return spec as unknown as ConfigSpec;
}

const envName = (f: string) => `STRATA_${f.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

/** What one Strata container's role would load, through the role's own spec. */
function roleConfig(r: Rendered, w: Obj, container: Obj, spec: ConfigSpec, tmp: string): { config: Record<string, unknown>; env: Record<string, string> } {
  const pod = w.kind === 'StatefulSet' ? `${nameOf(w)}-0` : `${nameOf(w)}-7d9f8b6c5-x2x4z`;
  const env = containerEnv(r, container, pod);
  const known = new Set(Object.keys(spec).map(envName));
  for (const k of Object.keys(env)) {
    // A STRATA_ variable no field reads is silently ignored by the role: a typo that changes nothing.
    if (k.startsWith('STRATA_') && k !== 'STRATA_CONFIG' && !known.has(k)) throw new Error(`${nameOf(w)}: ${k} is not a field of the role's config`);
  }
  const argv = (Array.isArray(container.args) ? container.args : []).map(str).slice(1);
  const at = argv.indexOf('--config');
  if (at >= 0) {
    const path = argv[at + 1] ?? '';
    const mount = arr(container.volumeMounts).find((m) => path.startsWith(`${str(m.mountPath)}/`));
    if (!mount) throw new Error(`${nameOf(w)}: --config ${path} is not on a mounted volume`);
    const volume = arr(podSpec(w).volumes).find((v) => v.name === mount.name);
    const cmName = str(obj(volume?.configMap).name);
    if (!cmName) throw new Error(`${nameOf(w)}: --config ${path} is not on a ConfigMap volume`);
    const key = posix.relative(str(mount.mountPath), path);
    const content = obj(r.get('ConfigMap', cmName).data)[key];
    if (typeof content !== 'string') throw new Error(`${nameOf(w)}: ConfigMap ${cmName} has no key ${key}`);
    const file = join(tmp, `${r.overlay}-${nameOf(w)}-${key}`);
    writeFileSync(file, content);
    argv[at + 1] = file;
  }
  return { config: loadConfig(spec, { argv, env }), env };
}

const MiB = 1024 * 1024;
/** Config fields that hold memory outside the V8 heap (buffers), in bytes. */
const offHeapBudgetFields = ['managedLedgerCacheBytes', 'maxInFlightBytes', 'indexCacheBytes', 'journalMaxGroupBytes'];

function quantityBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`memory quantity ${q} not understood by the test`);
  const units: Record<string, number> = { Ki: 1024, Mi: MiB, Gi: 1024 * MiB, Ti: 1024 * 1024 * MiB, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * (m[2] ? units[m[2]]! : 1);
}

// ---------------------------------------------------------------------------------------------------
const expectedReplicas: Record<string, Record<string, number>> = {
  dev: { etcd: 1, bookie: 1, broker: 1, coordinator: 1 },
  production: { etcd: 3, bookie: 3, broker: 3, coordinator: 2 },
};

describe.skipIf(!haveKubectl)('deploy/k8s manifests', () => {
  const specs = new Map<RoleName, ConfigSpec>();
  let tmp = '';
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'strata-k8s-'));
    for (const role of ['broker', 'bookie', 'coordinator'] as const) specs.set(role, await roleSpec(role));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('has the dev and production overlays', () => {
    expect(overlays).toEqual(expect.arrayContaining(['dev', 'production']));
  });

  it('reads role specs whose default ports are DESIGN.md\'s', () => {
    for (const [role, spec] of specs) {
      expect([spec.grpcPort?.default, spec.httpPort?.default], role).toEqual([designPorts[role].grpc, designPorts[role].http]);
    }
  });

  describe('the unknown-field check', () => {
    const deployment = (): Obj => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'x', labels: { a: 'b' }, annotations: { 'prometheus.io/port': '1' } },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: {
          metadata: { labels: { a: 'b' } },
          spec: {
            terminationGracePeriodSeconds: 60,
            containers: [{ name: 'c', image: 'i', readinessProbe: { httpGet: { path: '/readyz', port: 'http' } }, resources: { limits: { cpu: '1' } } }],
          },
        },
      },
    });

    it('accepts a correct object, free-form maps included', () => {
      expect(schemaErrors(models['apps/v1/Deployment']!, deployment())).toBe('');
      expect(unknownFields(models['apps/v1/Deployment']!, deployment())).toEqual([]);
    });

    it('catches a misspelt field at any depth', () => {
      const d = deployment();
      const pod = obj(obj(obj(d.spec).template).spec);
      pod.terminationGracePeriodSecond = 60;
      obj(arr(pod.containers)[0]?.readinessProbe).httpGet = { paht: '/readyz', port: 'http' };
      d.spec = { ...obj(d.spec), replica: 3 };
      expect(unknownFields(models['apps/v1/Deployment']!, d).sort()).toEqual([
        'Deployment.spec.replica',
        'Deployment.spec.template.spec.containers[0].readinessProbe.httpGet.paht',
        'Deployment.spec.template.spec.terminationGracePeriodSecond',
      ]);
    });

    it('the schema check catches wrong types and missing required fields', () => {
      const d = deployment();
      d.spec = { ...obj(d.spec), replicas: 'three' };
      expect(schemaErrors(models['apps/v1/Deployment']!, d)).toMatch(/replicas/);
      const noSelector = deployment();
      delete obj(noSelector.spec).selector;
      expect(schemaErrors(models['apps/v1/Deployment']!, noSelector)).toMatch(/selector/);
    });
  });

  describe.each(overlays)('overlay %s', (overlay) => {
    let r: Rendered;
    beforeAll(() => {
      r = render(overlay);
    });

    it('renders only objects that pass the Kubernetes schema, with no unknown fields', () => {
      expect(r.docs.length).toBeGreaterThan(10);
      const problems: string[] = [];
      for (const doc of r.docs) {
        const model = modelFor(doc);
        const errors = schemaErrors(model, doc);
        if (errors) problems.push(`${str(doc.kind)} ${nameOf(doc)}: ${errors}`);
        for (const u of unknownFields(model, doc)) problems.push(`${nameOf(doc)}: unknown field ${u}`);
      }
      expect(problems).toEqual([]);
    });

    it('puts everything in the overlay namespace', () => {
      const namespaced = r.docs.filter((d) => d.kind !== 'Namespace');
      expect(namespaced.map((d) => obj(d.metadata).namespace)).toEqual(namespaced.map(() => r.namespace));
    });

    it('runs the expected replicas', () => {
      const expected = expectedReplicas[overlay];
      if (!expected) return;
      const actual = Object.fromEntries(workloads(r).map((w) => [nameOf(w), Number(obj(w.spec).replicas)]));
      expect(actual).toEqual(expected);
    });

    it('configures every Strata container so that its role starts, with ports, probes and addresses that match what it serves', () => {
      const strata = workloads(r).filter((w) => nameOf(w) !== 'etcd');
      expect(strata.map(nameOf).sort()).toEqual(['bookie', 'broker', 'coordinator']);
      for (const w of strata) {
        const name = nameOf(w);
        const containers = arr(podSpec(w).containers);
        expect(containers, name).toHaveLength(1);
        const c = containers[0]!;
        const role = str(Array.isArray(c.args) ? c.args[0] : '') as RoleName;
        expect(role, `${name} runs the role of its name`).toBe(name);
        const spec = specs.get(role)!;
        const { config, env } = roleConfig(r, w, c, spec, tmp);

        // Listening on all interfaces (kubelet probes and peers come from outside the pod), on the
        // ports the container declares.
        expect([config.grpcHost, config.httpHost], name).toEqual(['0.0.0.0', '0.0.0.0']);
        expect(portOf(c, 'grpc'), `${name} grpc port`).toBe(config.grpcPort);
        expect(portOf(c, 'http'), `${name} http port`).toBe(config.httpPort);

        // Probes: /readyz for readiness and /healthz for liveness, on the HTTP port.
        const readiness = obj(obj(c.readinessProbe).httpGet);
        const liveness = obj(obj(c.livenessProbe).httpGet);
        expect([readiness.path, portOf(c, readiness.port ?? null)], `${name} readiness`).toEqual(['/readyz', config.httpPort]);
        expect([liveness.path, portOf(c, liveness.port ?? null)], `${name} liveness`).toEqual(['/healthz', config.httpPort]);

        // Prometheus scrapes /metrics on the HTTP port.
        const ann = podAnnotations(w);
        expect([ann['prometheus.io/scrape'], ann['prometheus.io/path'], Number(ann['prometheus.io/port'])], name).toEqual(['true', '/metrics', config.httpPort]);

        // The metadata URL names the etcd members by their stable DNS names.
        const etcd = r.get('StatefulSet', 'etcd');
        const members = Array.from({ length: Number(obj(etcd.spec).replicas) }, (_, i) => `etcd-${i}.${str(obj(etcd.spec).serviceName)}:2379`);
        expect(config.metadataUrl, name).toBe(`etcd://${members.join(',')}`);

        // What a role advertises must reach it: its gRPC port, and for a StatefulSet its pod's DNS name
        // through the headless Service that governs it.
        if ('advertisedAddress' in spec) {
          const address = str(config.advertisedAddress);
          expect(address.endsWith(`:${String(config.grpcPort)}`), `${name} advertises ${address}`).toBe(true);
          if (w.kind === 'StatefulSet') {
            const service = r.get('Service', str(obj(w.spec).serviceName));
            expect(obj(service.spec).clusterIP, `${name} service is headless`).toBe('None');
            expect(address).toBe(`${name}-0.${nameOf(service)}.${r.namespace}.svc:${String(config.grpcPort)}`);
          } else {
            expect(address).toBe(`10.1.2.3:${String(config.grpcPort)}`);
          }
        }
        // The heap and the role's buffer budgets outside it fit in the memory limit, with room for node
        // itself (~64 MiB); otherwise the kernel kills the pod under load.
        const heapMiB = Number(/--max-old-space-size=(\d+)/.exec(env.NODE_OPTIONS ?? '')?.[1]);
        expect(heapMiB, `${name} sets its heap size`).toBeGreaterThan(0);
        const offHeap = offHeapBudgetFields.filter((f) => f in spec).reduce((sum, f) => sum + Number(config[f]), 0);
        const limit = quantityBytes(str(obj(obj(c.resources).limits).memory));
        expect(heapMiB * MiB + offHeap + 64 * MiB, `${name}: heap + off-heap budgets within the ${str(obj(obj(c.resources).limits).memory)} limit`).toBeLessThanOrEqual(limit);

        // New ledgers need `ensembleSize` bookies: the overlay must run at least that many.
        if ('ensembleSize' in spec) {
          const bookies = Number(obj(r.get('StatefulSet', 'bookie').spec).replicas);
          expect(Number(config.ensembleSize), `${name} ensembleSize <= ${bookies} bookies`).toBeLessThanOrEqual(bookies);
          expect(Number(config.writeQuorum)).toBeLessThanOrEqual(Number(config.ensembleSize));
          expect(Number(config.ackQuorum)).toBeLessThanOrEqual(Number(config.writeQuorum));
        }

        // A bookie keeps its ledgers on its PersistentVolumeClaim, not in the container's filesystem.
        if ('dataDir' in spec) {
          const dataDir = str(config.dataDir);
          const mount = arr(c.volumeMounts).find((m) => dataDir === str(m.mountPath) || dataDir.startsWith(`${str(m.mountPath)}/`));
          const claims = arr(obj(w.spec).volumeClaimTemplates).map(nameOf);
          expect(mount && claims.includes(str(mount.name)), `${name} dataDir ${dataDir} is on a PVC`).toBe(true);
        }
      }
    });

    it('runs etcd as a quorum of stable members with --pre-vote', () => {
      const etcd = r.get('StatefulSet', 'etcd');
      const spec = obj(etcd.spec);
      const c = arr(podSpec(etcd).containers)[0]!;
      expect(c.args).toContain('--pre-vote');
      expect(spec.podManagementPolicy).toBe('Parallel');
      const service = r.get('Service', str(spec.serviceName));
      expect(obj(service.spec)).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
      const env = containerEnv(r, c, 'etcd-1');
      const replicas = Number(spec.replicas);
      const expected = Array.from({ length: replicas }, (_, i) => `etcd-${i}=http://etcd-${i}.${nameOf(service)}:2380`).join(',');
      expect(env.ETCD_INITIAL_CLUSTER).toBe(expected);
      expect(env.ETCD_NAME).toBe('etcd-1');
      expect(env.ETCD_INITIAL_ADVERTISE_PEER_URLS).toBe(`http://etcd-1.${nameOf(service)}:2380`);
      expect(env.ETCD_ADVERTISE_CLIENT_URLS).toBe(`http://etcd-1.${nameOf(service)}:2379`);
      expect(portOf(c, obj(obj(c.readinessProbe).httpGet).port ?? null)).toBe(2381);
      expect(env.ETCD_LISTEN_METRICS_URLS).toBe('http://0.0.0.0:2381');
    });

    it('gives every pod non-root security, resources, probes and anti-affinity', () => {
      for (const w of workloads(r)) {
        const name = nameOf(w);
        const pod = podSpec(w);
        expect(obj(pod.securityContext).runAsNonRoot, name).toBe(true);
        expect(Number(obj(pod.securityContext).runAsUser), name).toBeGreaterThan(0);
        expect(obj(obj(pod.affinity).podAntiAffinity), name).not.toEqual({});
        for (const c of arr(pod.containers)) {
          const res = obj(c.resources);
          expect(Object.keys(obj(res.requests)).sort(), name).toEqual(['cpu', 'memory']);
          expect(Object.keys(obj(res.limits)).sort(), name).toEqual(['cpu', 'memory']);
          expect(c.readinessProbe, name).toBeDefined();
          expect(c.livenessProbe, name).toBeDefined();
          expect(obj(c.securityContext).allowPrivilegeEscalation, name).toBe(false);
        }
      }
      // A broker must have time to hand its bundles off before SIGKILL.
      expect(Number(podSpec(r.get('Deployment', 'broker')).terminationGracePeriodSeconds)).toBeGreaterThanOrEqual(60);
      if (overlay === 'production') {
        for (const name of ['etcd', 'bookie']) {
          const anti = obj(obj(podSpec(r.get('StatefulSet', name)).affinity).podAntiAffinity);
          expect(anti.requiredDuringSchedulingIgnoredDuringExecution, `${name} is one per node`).toBeDefined();
        }
      }
    });

    it('has a Service for each role whose ports reach a container port, headless for the StatefulSets', () => {
      for (const s of r.byKind('Service')) {
        const selector = obj(obj(s.spec).selector);
        const targets = workloads(r).filter((w) => matches(selector, podLabels(w)));
        expect(targets.map(nameOf), `Service ${nameOf(s)} selects one workload`).toHaveLength(1);
        const c = arr(podSpec(targets[0]!).containers)[0]!;
        for (const p of arr(obj(s.spec).ports)) {
          expect(() => portOf(c, p.targetPort ?? p.port ?? null), `Service ${nameOf(s)} port ${str(p.name)}`).not.toThrow();
          expect(portOf(c, p.targetPort ?? null), `Service ${nameOf(s)} port ${str(p.name)}`).toBe(p.port);
        }
      }
      for (const set of r.byKind('StatefulSet')) {
        expect(obj(r.get('Service', str(obj(set.spec).serviceName)).spec).clusterIP, nameOf(set)).toBe('None');
      }
      // The client-facing broker Service.
      expect(obj(r.get('Service', 'broker').spec).clusterIP).not.toBe('None');
    });

    it('has a PodDisruptionBudget for every workload that allows one pod down at a time', () => {
      for (const w of workloads(r)) {
        const pdbs = r.byKind('PodDisruptionBudget').filter((p) => matches(obj(obj(obj(p.spec).selector).matchLabels), podLabels(w)));
        expect(pdbs.map((p) => obj(p.spec).maxUnavailable), nameOf(w)).toEqual([1]);
      }
    });
  });
});
