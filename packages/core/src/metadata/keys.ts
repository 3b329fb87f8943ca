import type { MetaKey } from '@berth/plugin-api';

/**
 * Key layout. Namespaces have a record of their own; everything namespaced
 * lives under ['v1', namespace, kind, …] so a namespace's resources are one
 * range, as in containerd's bolt buckets.
 */
export const namespaceKey = (name: string): MetaKey => ['namespaces', name];
export const NAMESPACES_PREFIX: MetaKey = ['namespaces'];
export const namespaceResourcesPrefix = (name: string): MetaKey => ['v1', name];

export const blobKey = (ns: string, digest: string): MetaKey => ['v1', ns, 'content', 'blob', digest];
export const blobsPrefix = (ns: string): MetaKey => ['v1', ns, 'content', 'blob'];
export const ingestKey = (ns: string, ref: string): MetaKey => ['v1', ns, 'content', 'ingest', ref];
export const ingestsPrefix = (ns: string): MetaKey => ['v1', ns, 'content', 'ingest'];
export const imageKey = (ns: string, name: string): MetaKey => ['v1', ns, 'images', name];
export const imagesPrefix = (ns: string): MetaKey => ['v1', ns, 'images'];
export const leaseKey = (ns: string, id: string): MetaKey => ['v1', ns, 'leases', id];
export const leasesPrefix = (ns: string): MetaKey => ['v1', ns, 'leases'];
/** A lease's resources sit under the lease: ['v1', ns, 'leases', id, 'r', type, resource id]. */
export const leaseResourceKey = (ns: string, id: string, type: string, resource: string): MetaKey => [
  ...leaseKey(ns, id),
  'r',
  type,
  resource,
];
export const leaseResourcesPrefix = (ns: string, id: string): MetaKey => [...leaseKey(ns, id), 'r'];

/** Names shown when a namespace still holds something (containerd says "blobs" for content). */
export const KIND_NAMES: Readonly<Record<string, string>> = { content: 'blobs' };

export interface NamespaceRecord {
  labels: Record<string, string>;
  createdAt: string;
}

export interface BlobRecord {
  size: number;
  createdAt: string;
  updatedAt: string;
  labels: Record<string, string>;
}

export interface IngestRecord {
  /** The ref in the shared content store: namespaced so two namespaces never collide. */
  backendRef: string;
  expected: string;
  createdAt: string;
  /**
   * For an ingest opened outside any lease: after this the collector may abort
   * it (containerd gives such ingests 24 hours). Leased ingests live as long as
   * their lease holds them.
   */
  expireAt?: string;
}

/** How long an ingest outside any lease is kept, as containerd. */
export const UNLEASED_INGEST_TTL_MS = 24 * 60 * 60 * 1000;

export interface ImageRecord {
  labels: Record<string, string>;
  target: { mediaType: string; digest: string; size: number; annotations: Record<string, string> };
  createdAt: string;
  updatedAt: string;
}

export interface LeaseRecord {
  labels: Record<string, string>;
  createdAt: string;
}

export const containerKey = (ns: string, id: string): MetaKey => ['v1', ns, 'containers', id];
export const containersPrefix = (ns: string): MetaKey => ['v1', ns, 'containers'];

/** An Any as JSON: bytes in base64. */
export interface AnyRecord {
  typeUrl: string;
  value: string;
}

export interface ContainerRecord {
  labels: Record<string, string>;
  image: string;
  runtime: { name: string; options?: AnyRecord };
  spec?: AnyRecord;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyRecord>;
  sandbox: string;
  createdAt: string;
  updatedAt: string;
}

export const snapshotKey = (ns: string, snapshotter: string, key: string): MetaKey => ['v1', ns, 'snapshots', snapshotter, key];
export const snapshotsPrefix = (ns: string, snapshotter: string): MetaKey => ['v1', ns, 'snapshots', snapshotter];
export const allSnapshotsPrefix = (ns: string): MetaKey => ['v1', ns, 'snapshots'];
/** Last number handed out for backend snapshot keys. */
export const SNAPSHOT_SEQUENCE: MetaKey = ['berth', 'seq', 'snapshots'];

export interface SnapshotRecord {
  /** The key in the snapshotter: `<ns>/<seq>/<key>`, unique across namespaces and reuses of a key. */
  backendKey: string;
  parent: string;
  kind: 'view' | 'active' | 'committed';
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

export const backendRef = (ns: string, ref: string) => `${ns}/${ref}`;

const decoder = new TextDecoder();
export const parseJSON = <T>(value: Uint8Array): T => JSON.parse(decoder.decode(value)) as T;
