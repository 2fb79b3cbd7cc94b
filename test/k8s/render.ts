// Rendering the kustomize overlays offline and reading the objects as the kubelet would: shared by
// test/k8s-manifests.test.ts (static checks) and test/k8s-dev-overlay.test.ts (running the dev overlay's
// pods as containers).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const overlaysDir = join(root, 'deploy/k8s/overlays');

// Types of the rendered YAML: plain JSON, read defensively.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Obj = { [key: string]: Json };
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const obj = (v: unknown): Obj => (isObj(v) ? v : {});
export const arr = (v: unknown): Obj[] => (Array.isArray(v) ? v.filter(isObj) : []);
export const str = (v: unknown): string => (typeof v === 'string' ? v : '');
// Rendering and indexing an overlay.
export interface Rendered {
  overlay: string;
  namespace: string;
  docs: Obj[];
  byKind(kind: string): Obj[];
  get(kind: string, name: string): Obj;
}

export function render(overlay: string): Rendered {
  const out = spawnSync('kubectl', ['kustomize', join(overlaysDir, overlay)], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (out.status !== 0) throw new Error(`kubectl kustomize ${overlay} failed: ${out.stderr}`);
  const docs = parseAllDocuments(out.stdout).map((d) => {
    if (d.errors.length) throw new Error(`${overlay}: YAML error: ${d.errors[0]?.message}`);
    return obj(d.toJS());
  });
  const namespaces = docs.filter((d) => d.kind === 'Namespace').map((d) => str(obj(d.metadata).name));
  const byKind = (kind: string) => docs.filter((d) => d.kind === kind);
  return {
    overlay,
    namespace: namespaces[0] ?? 'default',
    docs,
    byKind,
    get(kind, name) {
      const found = byKind(kind).find((d) => obj(d.metadata).name === name);
      if (!found) throw new Error(`${overlay}: no ${kind} ${name}`);
      return found;
    },
  };
}

export const workloads = (r: Rendered) => [...r.byKind('Deployment'), ...r.byKind('StatefulSet')];
export const podSpec = (w: Obj) => obj(obj(obj(w.spec).template).spec);
export const podLabels = (w: Obj) => obj(obj(obj(obj(w.spec).template).metadata).labels);
export const podAnnotations = (w: Obj) => obj(obj(obj(obj(w.spec).template).metadata).annotations);
export const nameOf = (o: Obj) => str(obj(o.metadata).name);
export const matches = (selector: Obj, labels: Obj) => Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

/** A container port by name or number. */
export function portOf(container: Obj, ref: Json): number {
  if (typeof ref === 'number') return ref;
  const p = arr(container.ports).find((x) => x.name === ref);
  if (!p) throw new Error(`container ${str(container.name)} has no port named ${String(ref)}`);
  return Number(p.containerPort);
}

/** Sample values of the downward API, as the kubelet would fill them for one pod. */
export function fieldRefValue(path: string, pod: string, namespace: string, podIP = '10.1.2.3'): string {
  switch (path) {
    case 'metadata.name':
      return pod;
    case 'metadata.namespace':
      return namespace;
    case 'status.podIP':
      return podIP;
    default:
      throw new Error(`fieldRef ${path} not modelled by the test`);
  }
}

/**
 * The environment a container sees, built as the kubelet does: envFrom first, then env in order, each
 * `$(VAR)` replaced by a variable defined before it. A reference to a variable not (yet) defined stays
 * literal in Kubernetes, which is never what a manifest means: it is an error here.
 */
export function containerEnv(r: Rendered, container: Obj, pod: string, podIP?: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of arr(container.envFrom)) {
    const cm = r.get('ConfigMap', str(obj(from.configMapRef).name));
    for (const [k, v] of Object.entries(obj(cm.data))) env[k] = str(v);
  }
  const expand = (value: string, where: string) =>
    value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      const v = env[name];
      if (v === undefined) throw new Error(`${where} refers to $(${name}) before it is defined`);
      return v;
    });
  for (const e of arr(container.env)) {
    const name = str(e.name);
    const ref = obj(obj(e.valueFrom).fieldRef).fieldPath;
    const cmRef = obj(obj(e.valueFrom).configMapKeyRef);
    if (typeof ref === 'string') env[name] = fieldRefValue(ref, pod, r.namespace, podIP);
    else if (cmRef.name) env[name] = str(obj(r.get('ConfigMap', str(cmRef.name)).data)[str(cmRef.key)]);
    else env[name] = expand(str(e.value), `env ${name} of ${str(container.name)}`);
  }
  for (const a of (Array.isArray(container.args) ? container.args : []).map(str)) expand(a, `args of ${str(container.name)}`);
  return env;
}

