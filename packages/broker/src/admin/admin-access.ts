import type { MethodAccess, ServiceAccess } from '@strata/runtime';
import type { AdminHandlers } from '../generated/strata/broker/v1/Admin.js';

/** What each Admin method needs, for the call gate (decision 0087): Pulsar's tenant-admin and super-user. */
const onTopic: MethodAccess<{ topic?: string }> = { action: 'tenant-admin', resourceOf: (m) => m.topic };
const onNamespace: MethodAccess<{ namespace?: string }> = { action: 'tenant-admin', resourceOf: (m) => m.namespace };
const superUser: MethodAccess = { action: 'super-user' };

export const adminAccess: ServiceAccess<AdminHandlers> = {
  ListTenants: superUser,
  CreateTenant: superUser,
  DeleteTenant: superUser,
  ListNamespaces: { action: 'tenant-admin', resourceOf: (m: { tenant?: string }) => m.tenant },
  CreateNamespace: onNamespace,
  DeleteNamespace: onNamespace,
  GetNamespacePolicies: onNamespace,
  SetNamespacePolicies: onNamespace,
  ListTopics: onNamespace,
  CreatePartitionedTopic: onTopic,
  DeletePartitionedTopic: onTopic,
  ListPartitionedTopics: onNamespace,
  DeleteTopic: onTopic,
  GetTopicStats: onTopic,
  ListBrokers: superUser,
  ListBundles: onNamespace,
  UnloadBundle: superUser,
  SplitBundle: superUser,
  LookupBundle: onTopic,
};
