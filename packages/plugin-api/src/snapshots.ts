import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import { token } from './token.js';

export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly target?: string;
  readonly options: readonly string[];
}

export type SnapshotKind = 'view' | 'active' | 'committed';

export interface SnapshotInfo {
  readonly name: string;
  /** The committed snapshot this one is based on; absent for a base layer. */
  readonly parent?: string;
  readonly kind: SnapshotKind;
  readonly labels: Labels;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface SnapshotUsage {
  /** Bytes used by this snapshot alone (not its parents). */
  readonly size: number;
  readonly inodes: number;
}

/**
 * A snapshotter (io.containerd.snapshotter.v1), one per id (`overlayfs`,
 * `native`), as containerd's snapshots.Snapshotter: keys are its own (the
 * namespaced service above it maps namespaces onto them).
 *
 * Errors the unpacker relies on: a missing key or parent is NotFound; a key
 * or commit name already used is AlreadyExists; a parent that is not
 * committed is InvalidArgument (as containerd 1.6 answers); committing a
 * view is FailedPrecondition.
 */
export interface Snapshotter {
  stat(key: string): Promise<SnapshotInfo>;
  /** Paths: `labels`, `labels.<key>`; none replaces the labels. */
  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo>;
  usage(key: string): Promise<SnapshotUsage>;
  /** Mounts of an active snapshot or view, ready for mount(2) (`ctr snapshots mounts` prints them). */
  mounts(key: string): Promise<Mount[]>;
  /** A writable snapshot on `parent` (a committed snapshot) or empty. */
  prepare(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]>;
  /** A read-only snapshot on `parent`. */
  view(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]>;
  /** Turn active snapshot `key` into committed snapshot `name`; the key is gone afterwards. */
  commit(name: string, key: string, labels?: Labels): Promise<void>;
  /** FailedPrecondition while it has children. */
  remove(key: string): Promise<void>;
  walk(fn: (info: SnapshotInfo) => Promise<void> | void, filters?: readonly string[]): Promise<void>;
  /** Remove directories no snapshot owns any more (after a crash or GC). */
  cleanup?(): Promise<void>;
  close?(): Promise<void>;
}
export const Snapshotter = token<Snapshotter>('Snapshotter', { multi: true });

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Labels;
}

/** A layer blob to apply: its descriptor and a way to read its (possibly compressed) bytes. */
export interface LayerSource extends Descriptor {
  open(): AsyncIterable<Uint8Array>;
}

/** Where `compare` writes the layer it produces. */
export interface LayerSink {
  /** `application/vnd.oci.image.layer.v1.tar` or `…tar+gzip`. */
  readonly mediaType: string;
  write(chunk: Uint8Array): Promise<void>;
}

export interface AppliedLayer {
  /** sha256 of the uncompressed tar: the layer's diff ID. */
  readonly diffId: string;
  /** Bytes of the uncompressed tar. */
  readonly size: number;
}

/**
 * io.containerd.differ.v1. `apply` extracts a tar, tar+gzip or tar+zstd
 * layer onto mounts with OCI whiteouts, never writing outside the target;
 * `compare` writes the changes from `lower` to `upper` as a layer.
 */
export interface Differ {
  apply(layer: LayerSource, mounts: readonly Mount[], signal?: AbortSignal): Promise<AppliedLayer>;
  compare(lower: readonly Mount[], upper: readonly Mount[], sink: LayerSink, signal?: AbortSignal): Promise<AppliedLayer>;
}
export const Differ = token<Differ>('Differ');

/** Labels the unpacker and GC read on snapshots. */
export const SnapshotLabel = {
  /** Set on prepare: the committed name the caller means to create; if it exists, prepare is AlreadyExists. */
  ref: 'containerd.io/snapshot.ref',
} as const;

/**
 * Snapshots as containerd's clients see them: per namespace, per snapshotter,
 * with labels, events (/snapshot/prepare|commit|remove) and the caller's
 * lease joined.
 */
export interface SnapshotsService {
  prepare(ctx: RequestContext, snapshotter: string, key: string, parent: string, labels?: Labels): Promise<Mount[]>;
  view(ctx: RequestContext, snapshotter: string, key: string, parent: string, labels?: Labels): Promise<Mount[]>;
  mounts(ctx: RequestContext, snapshotter: string, key: string): Promise<Mount[]>;
  commit(ctx: RequestContext, snapshotter: string, name: string, key: string, labels?: Labels): Promise<void>;
  remove(ctx: RequestContext, snapshotter: string, key: string): Promise<void>;
  stat(ctx: RequestContext, snapshotter: string, key: string): Promise<SnapshotInfo>;
  update(ctx: RequestContext, snapshotter: string, info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo>;
  /** Filter fields: kind, name, parent, labels.<key>. */
  list(ctx: RequestContext, snapshotter: string, filters: readonly string[]): Promise<SnapshotInfo[]>;
  usage(ctx: RequestContext, snapshotter: string, key: string): Promise<SnapshotUsage>;
  cleanup(ctx: RequestContext, snapshotter: string): Promise<void>;
}
export const SnapshotsService = token<SnapshotsService>('SnapshotsService');

/** The Diff service: apply a layer from content onto mounts; write the difference of two mounts to content. */
export interface DiffService {
  /** Returns the uncompressed layer's descriptor: its digest is the diff ID. */
  apply(ctx: RequestContext, layer: Descriptor, mounts: readonly Mount[]): Promise<Descriptor>;
  diff(
    ctx: RequestContext,
    lower: readonly Mount[],
    upper: readonly Mount[],
    opts: { mediaType?: string; ref?: string; labels?: Labels },
  ): Promise<Descriptor>;
}
export const DiffService = token<DiffService>('DiffService');
