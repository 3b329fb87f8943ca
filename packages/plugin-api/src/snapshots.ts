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
  readonly parent?: string;
  readonly kind: SnapshotKind;
  readonly labels: Labels;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface SnapshotUsage {
  readonly size: number;
  readonly inodes: number;
}

/** io.containerd.snapshotter.v1; provided once per snapshotter id (`overlayfs`, `native`). */
export interface Snapshotter {
  stat(key: string): Promise<SnapshotInfo>;
  update(info: SnapshotInfo, paths: readonly string[]): Promise<SnapshotInfo>;
  usage(key: string): Promise<SnapshotUsage>;
  mounts(key: string): Promise<Mount[]>;
  prepare(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]>;
  view(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]>;
  commit(name: string, key: string, labels?: Labels): Promise<void>;
  remove(key: string): Promise<void>;
  walk(fn: (info: SnapshotInfo) => Promise<void> | void, filters?: readonly string[]): Promise<void>;
  cleanup?(): Promise<void>;
}
export const Snapshotter = token<Snapshotter>('Snapshotter', { multi: true });

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Labels;
}

/** io.containerd.differ.v1 */
export interface Differ {
  /** Applies a layer onto mounts and returns its uncompressed digest (diff ID). */
  apply(desc: Descriptor, mounts: readonly Mount[], signal?: AbortSignal): Promise<Descriptor>;
  compare(lower: readonly Mount[], upper: readonly Mount[], mediaType?: string): Promise<Descriptor>;
}
export const Differ = token<Differ>('Differ');
