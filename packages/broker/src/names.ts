import { crc32c } from '@node-rs/crc32';
import { InvalidRequestError, InvalidTopicNameError } from './errors.js';

/**
 * Topic and namespace names (DESIGN.md "Names").
 *
 *   persistent://tenant/namespace/topic      non-persistent://tenant/namespace/topic
 *   tenant/namespace/topic                   -> persistent://tenant/namespace/topic
 *   topic                                    -> persistent://public/default/topic
 *   <topic>-partition-N                      partition N of the partitioned topic <topic>
 *
 * Tenants, namespaces and topic local names are 1..NAME_MAX_CHARS characters of [A-Za-z0-9._:=-]
 * (no `/`, so a name maps one-to-one onto metadata keys), and may not be `.` or `..`.
 */
export type TopicDomain = 'persistent' | 'non-persistent';

export const DEFAULT_TENANT = 'public';
export const DEFAULT_NAMESPACE = 'default';
export const NAME_MAX_CHARS = 255;
const PART = /^[A-Za-z0-9._:=-]+$/;
const PARTITION_SUFFIX = /-partition-(0|[1-9][0-9]{0,8})$/;

export class TopicName {
  private constructor(
    readonly domain: TopicDomain,
    readonly tenant: string,
    readonly namespace: string,
    /** The local name, including any `-partition-N` suffix. */
    readonly localName: string,
    /** N for `<topic>-partition-N`, else -1. */
    readonly partitionIndex: number,
  ) {}

  /** Parses and validates a topic name; throws InvalidTopicNameError (INVALID_ARGUMENT). */
  static parse(input: string): TopicName {
    if (typeof input !== 'string' || input.length === 0) throw new InvalidTopicNameError(String(input), 'empty');
    if (input.length > 3 * NAME_MAX_CHARS + 20) throw new InvalidTopicNameError(input, 'too long');
    let domain: TopicDomain = 'persistent';
    let rest = input;
    const scheme = /^([a-z-]+):\/\//.exec(input);
    if (scheme) {
      if (scheme[1] !== 'persistent' && scheme[1] !== 'non-persistent') {
        throw new InvalidTopicNameError(input, `unknown domain "${scheme[1]}" (persistent or non-persistent)`);
      }
      domain = scheme[1];
      rest = input.slice(scheme[0].length);
    }
    const parts = rest.split('/');
    let tenant: string, namespace: string, local: string;
    if (parts.length === 1 && !scheme) [tenant, namespace, local] = [DEFAULT_TENANT, DEFAULT_NAMESPACE, parts[0] as string];
    else if (parts.length === 3) [tenant, namespace, local] = parts as [string, string, string];
    else throw new InvalidTopicNameError(input, 'expected domain://tenant/namespace/topic, tenant/namespace/topic or topic');
    for (const [what, part] of [['tenant', tenant], ['namespace', namespace], ['topic', local]] as const) {
      const problem = checkPart(part);
      if (problem) throw new InvalidTopicNameError(input, `${what} ${problem}`);
    }
    const m = PARTITION_SUFFIX.exec(local);
    const partitionIndex = m ? Number(m[1]) : -1;
    if (m && m.index === 0) throw new InvalidTopicNameError(input, 'empty base name before -partition-N');
    return new TopicName(domain, tenant, namespace, local, partitionIndex);
  }

  get isPersistent(): boolean {
    return this.domain === 'persistent';
  }

  get isPartition(): boolean {
    return this.partitionIndex >= 0;
  }

  /** `tenant/namespace` */
  get namespaceName(): string {
    return `${this.tenant}/${this.namespace}`;
  }

  /** The full name, e.g. `persistent://public/default/t-partition-0`. */
  toString(): string {
    return `${this.domain}://${this.tenant}/${this.namespace}/${this.localName}`;
  }

  /** The partitioned topic this is a partition of; itself when it is not a partition. */
  get partitionedTopic(): TopicName {
    if (!this.isPartition) return this;
    const base = this.localName.replace(PARTITION_SUFFIX, '');
    return new TopicName(this.domain, this.tenant, this.namespace, base, -1);
  }

  partition(index: number): TopicName {
    if (this.isPartition) throw new InvalidTopicNameError(this.toString(), 'is already a partition');
    if (!Number.isInteger(index) || index < 0) throw new InvalidRequestError(`bad partition index ${index}`);
    return new TopicName(this.domain, this.tenant, this.namespace, `${this.localName}-partition-${index}`, index);
  }

  /** The relative path `tenant/namespace/domain/topic` used under metadata prefixes. */
  get path(): string {
    return `${this.tenant}/${this.namespace}/${this.domain}/${this.localName}`;
  }

  equals(other: TopicName): boolean {
    return this.toString() === other.toString();
  }
}

/** Validates `tenant/namespace`; throws INVALID_ARGUMENT. */
export function parseNamespace(input: string): { tenant: string; namespace: string; name: string } {
  const parts = typeof input === 'string' ? input.split('/') : [];
  if (parts.length !== 2) throw new InvalidRequestError(`invalid namespace "${String(input).slice(0, 300)}": expected tenant/namespace`);
  const [tenant, namespace] = parts as [string, string];
  const problem = checkPart(tenant) ?? checkPart(namespace);
  if (problem) throw new InvalidRequestError(`invalid namespace "${input.slice(0, 300)}": ${problem}`);
  return { tenant, namespace, name: `${tenant}/${namespace}` };
}

export function checkTenantName(tenant: string): void {
  const problem = checkPart(tenant);
  if (problem) throw new InvalidRequestError(`invalid tenant "${String(tenant).slice(0, 300)}": ${problem}`);
}

function checkPart(part: string): string | undefined {
  if (typeof part !== 'string' || part.length === 0) return 'is empty';
  if (part.length > NAME_MAX_CHARS) return `is longer than ${NAME_MAX_CHARS} characters`;
  if (!PART.test(part)) return 'may contain only letters, digits and . _ : = -';
  if (part === '.' || part === '..') return 'may not be . or ..';
  return undefined;
}

/**
 * The 32-bit hash that places a topic in a namespace bundle: CRC32C of the full topic name's UTF-8
 * bytes (partitions hash separately, so a partitioned topic spreads over bundles). Decision 0035.
 */
export function topicHash(topic: TopicName): number {
  return crc32c(Buffer.from(topic.toString(), 'utf8')) >>> 0;
}
