import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import { token } from './token.js';

export interface Lease {
  readonly id: string;
  readonly createdAt: Date;
  readonly labels: Labels;
}

/** What a lease holds: `content` (digest), `ingests` (ref), `snapshots/<snapshotter>` (key). */
export interface LeaseResource {
  readonly id: string;
  readonly type: string;
}

/** Labels with meaning to the garbage collector, as containerd spells them. */
export const GcLabel = {
  root: 'containerd.io/gc.root',
  expire: 'containerd.io/gc.expire',
  flat: 'containerd.io/gc.flat',
  refContentPrefix: 'containerd.io/gc.ref.content',
  refSnapshotPrefix: 'containerd.io/gc.ref.snapshot.',
} as const;

export interface LeasesService {
  /** An empty id gets a generated one; AlreadyExists for a taken id. */
  create(ctx: RequestContext, lease: { id?: string; labels?: Labels }): Promise<Lease>;
  delete(ctx: RequestContext, id: string, opts?: { sync?: boolean }): Promise<void>;
  list(ctx: RequestContext, filters: readonly string[]): Promise<Lease[]>;
  addResource(ctx: RequestContext, id: string, resource: LeaseResource): Promise<void>;
  deleteResource(ctx: RequestContext, id: string, resource: LeaseResource): Promise<void>;
  listResources(ctx: RequestContext, id: string): Promise<LeaseResource[]>;
}
export const LeasesService = token<LeasesService>('LeasesService');

export interface GcStats {
  readonly contentDeleted: number;
  readonly blobsDeleted: number;
  readonly leasesExpired: number;
  readonly snapshotsDeleted: number;
  /** Ingests aborted because their lease went away or, outside leases, they expired. */
  readonly ingestsAborted: number;
  readonly durationMs: number;
}

/**
 * What a deletion left behind in a store, beyond the metadata. A scheduled
 * collection walks a backend (the content store, a snapshotter) only when
 * its own sweep deleted records of that backend or a deletion said so here:
 * a service that deletes a blob's record and leaves the blob for the
 * collector passes `{ content: true }`.
 */
export interface GcDirty {
  readonly content?: boolean;
  /** Snapshotter names, as in `containerd.io/gc.ref.snapshot.<name>`. */
  readonly snapshotters?: readonly string[];
}

/** io.containerd.gc.v1: mark from roots, sweep the rest. */
export interface GarbageCollector {
  /**
   * Ask for a collection after a deletion. Collections coalesce and are
   * paced as containerd paces them (a share of time, `pause_threshold`).
   */
  schedule(dirty?: GcDirty): void;
  /** Run a collection now (or join the one running), every backend walked, and wait for it. */
  collect(): Promise<GcStats>;
}
export const GarbageCollector = token<GarbageCollector>('GarbageCollector');
