import type { MetaKey } from '@berth/plugin-api';

/** Where a namespace's own record lives; its resources live under ['v1', name, kind, …]. */
export const namespaceKey = (name: string): MetaKey => ['namespaces', name];
export const NAMESPACES_PREFIX: MetaKey = ['namespaces'];
export const namespaceResourcesPrefix = (name: string): MetaKey => ['v1', name];

export interface NamespaceRecord {
  labels: Record<string, string>;
  createdAt: string;
}
