import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, StrataError } from './errors.js';

/**
 * Role configuration: one spec per role, read from (lowest to highest precedence) the defaults, an
 * optional YAML file (`--config FILE` or STRATA_CONFIG), `STRATA_*` environment variables, and flags.
 * A field `journalGroupWaitMs` is the YAML key `journalGroupWaitMs`, the env var
 * `STRATA_JOURNAL_GROUP_WAIT_MS` and the flag `--journal-group-wait-ms`. Units go last in names.
 */
export type FieldKind = 'string' | 'int' | 'number' | 'boolean' | 'list';

export interface FieldSpec<T> {
  readonly kind: FieldKind;
  readonly default: T;
  readonly doc: string;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  /** Returns a problem to report, or undefined when the value is fine. */
  readonly check?: (value: T) => string | undefined;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- heterogeneous field types
export type ConfigSpec = Record<string, FieldSpec<any>>;
export type ConfigValues<S extends ConfigSpec> = { -readonly [K in keyof S]: S[K]['default'] };

type Limits = { min?: number; max?: number; check?: (value: number) => string | undefined };

export const field = {
  string: (def: string, doc: string, check?: (v: string) => string | undefined): FieldSpec<string> => ({ kind: 'string', default: def, doc, check }),
  int: (def: number, doc: string, limits: Limits = {}): FieldSpec<number> => ({ kind: 'int', default: def, doc, ...limits }),
  number: (def: number, doc: string, limits: Limits = {}): FieldSpec<number> => ({ kind: 'number', default: def, doc, ...limits }),
  boolean: (def: boolean, doc: string): FieldSpec<boolean> => ({ kind: 'boolean', default: def, doc }),
  list: (def: string[], doc: string): FieldSpec<string[]> => ({ kind: 'list', default: def, doc }),
  oneOf: <T extends string>(choices: readonly T[], def: T, doc: string): FieldSpec<T> => ({ kind: 'string', default: def, doc, choices }),
};

export class ConfigError extends StrataError {
  constructor(readonly field: string, message: string) {
    super(ErrorCode.CONFIG, `invalid config: ${field}: ${message}`, { retriable: false });
    this.name = 'ConfigError';
  }
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (name: string) => `STRATA_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

export interface ConfigSource {
  argv?: readonly string[];
  env?: Record<string, string | undefined>;
}

/** Loads, validates and normalises a role's configuration once, at start-up. */
export function loadConfig<S extends ConfigSpec>(spec: S, source: ConfigSource = {}): ConfigValues<S> {
  const env = source.env ?? process.env;
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  const flagToField = new Map<string, string>();
  for (const [name, f] of Object.entries(spec)) {
    const flag = kebab(name);
    flagToField.set(flag, name);
    options[flag] = { type: f.kind === 'boolean' ? 'boolean' : 'string' };
    if (f.kind === 'boolean') options[`no-${flag}`] = { type: 'boolean' };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...(source.argv ?? [])], options, strict: true, allowPositionals: false });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const flag = /'(--[^' ]+)/.exec(message)?.[1] ?? 'flags';
    throw new ConfigError(flag, message);
  }
  const flags = parsed.values as Record<string, string | boolean | undefined>;

  const file = (flags.config as string | undefined) ?? env.STRATA_CONFIG;
  const fromFile = file === undefined ? {} : readYaml(file, spec);

  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(spec)) {
    const flag = kebab(name);
    let raw: unknown = f.default;
    let where = `default of ${name}`;
    if (name in fromFile) [raw, where] = [fromFile[name], `${name} (in ${file})`];
    const fromEnv = env[envName(name)];
    if (fromEnv !== undefined) [raw, where] = [fromEnv, envName(name)];
    if (flags[flag] !== undefined) [raw, where] = [flags[flag], `--${flag}`];
    if (flags[`no-${flag}`] === true) [raw, where] = [false, `--no-${flag}`];
    out[name] = coerce(f, raw, where);
  }
  return out as ConfigValues<S>;
}

function readYaml(file: string, spec: ConfigSpec): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError('--config', `${file} must be a YAML mapping`);
  for (const key of Object.keys(doc)) {
    if (!(key in spec)) throw new ConfigError(key, `unknown key in ${file}`);
  }
  return doc as Record<string, unknown>;
}

function coerce(f: FieldSpec<unknown>, raw: unknown, where: string): unknown {
  let value: unknown = raw;
  switch (f.kind) {
    case 'string':
      if (typeof raw !== 'string') throw new ConfigError(where, `expected a string, got ${JSON.stringify(raw)}`);
      if (f.choices && !f.choices.includes(raw)) throw new ConfigError(where, `must be one of ${f.choices.join(', ')}, got "${raw}"`);
      break;
    case 'boolean':
      if (typeof raw === 'string' && /^(true|false|1|0)$/i.test(raw)) value = /^(true|1)$/i.test(raw);
      else if (typeof raw !== 'boolean') throw new ConfigError(where, `expected true or false, got ${JSON.stringify(raw)}`);
      break;
    case 'list':
      if (typeof raw === 'string') value = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else if (!Array.isArray(raw) || raw.some((s) => typeof s !== 'string')) throw new ConfigError(where, 'expected a list of strings');
      break;
    case 'int':
    case 'number': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isFinite(n)) throw new ConfigError(where, `expected a number, got ${JSON.stringify(raw)}`);
      if (f.kind === 'int' && !Number.isInteger(n)) throw new ConfigError(where, `expected an integer, got ${n}`);
      if (f.min !== undefined && n < f.min) throw new ConfigError(where, `must be >= ${f.min}, got ${n}`);
      if (f.max !== undefined && n > f.max) throw new ConfigError(where, `must be <= ${f.max}, got ${n}`);
      value = n;
      break;
    }
  }
  const problem = f.check?.(value);
  if (problem) throw new ConfigError(where, problem);
  return value;
}

/** `--help` text for a role: every field with its flag, env var, default and doc. */
export function describeConfig(spec: ConfigSpec): string {
  const rows = Object.entries(spec).map(([name, f]) => {
    const def = Array.isArray(f.default) ? f.default.join(',') : String(f.default);
    const choices = f.choices ? ` (${f.choices.join('|')})` : '';
    return `  --${kebab(name)}  [${envName(name)}]  default: ${def === '' ? '""' : def}${choices}\n      ${f.doc}`;
  });
  return ['  --config FILE  [STRATA_CONFIG]  a YAML file of these fields (camelCase keys)', ...rows].join('\n');
}
