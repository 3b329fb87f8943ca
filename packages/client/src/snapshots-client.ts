import { fromTimestamp, type ServiceClient, type Timestamp } from '@berth/api';
import { isNotFound, type Labels, type Mount, type SnapshotInfo, type SnapshotKind, type SnapshotUsage } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';

/** containerd's default snapshotter on Linux. */
export const DEFAULT_SNAPSHOTTER_ID = 'overlayfs';

/** The label an unpacker puts on the snapshots it makes: the chain ID they are committed as. */
export const SNAPSHOT_REF_LABEL = 'containerd.io/snapshot.ref';

export interface WireMount {
  type?: string;
  source?: string;
  target?: string;
  options?: string[];
}

interface WireSnapshotInfo {
  name?: string;
  parent?: string;
  kind?: number;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  labels?: Record<string, string>;
}

const KINDS: Record<number, SnapshotKind> = { 1: 'view', 2: 'active', 3: 'committed' };

export const mountsFromWire = (mounts: readonly WireMount[] | undefined | null): Mount[] =>
  (mounts ?? []).map((m) => ({
    type: m.type ?? '',
    source: m.source ?? '',
    ...(m.target ? { target: m.target } : {}),
    options: m.options ?? [],
  }));

export const mountsToWire = (mounts: readonly Mount[]): WireMount[] =>
  mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] }));

export const snapshotInfoFromWire = (i: WireSnapshotInfo | null | undefined): SnapshotInfo => ({
  name: i?.name ?? '',
  ...(i?.parent ? { parent: i.parent } : {}),
  kind: KINDS[i?.kind ?? 0] ?? 'active',
  labels: i?.labels ?? {},
  createdAt: fromTimestamp(i?.createdAt),
  updatedAt: fromTimestamp(i?.updatedAt),
});

export interface SnapshotsClientOptions {
  /** Default `overlayfs`. */
  readonly snapshotter?: string;
}

/**
 * containerd.services.snapshots.v1.Snapshots for one snapshotter (as
 * containerd's `client.SnapshotService(name)`). Errors as the daemon gives
 * them: NotFound for a missing key or parent, AlreadyExists for a key or
 * commit name in use, FailedPrecondition removing a snapshot with children.
 */
export class SnapshotsClient {
  readonly snapshotter: string;
  private readonly svc: ServiceClient;

  constructor(
    private readonly ctx: ClientContext,
    opts: SnapshotsClientOptions = {},
  ) {
    this.snapshotter = opts.snapshotter || DEFAULT_SNAPSHOTTER_ID;
    this.svc = ctx.service('containerd.services.snapshots.v1.Snapshots');
  }

  /** The same service for another snapshotter. */
  withSnapshotter(snapshotter: string): SnapshotsClient {
    return new SnapshotsClient(this.ctx, { snapshotter });
  }

  /** A writable snapshot `key` on committed `parent` (empty: none); its mounts. */
  async prepare(key: string, parent = '', labels: Labels = {}, opts?: RequestOptions): Promise<Mount[]> {
    const res = await this.svc.unary<{ mounts?: WireMount[] }>(
      'Prepare',
      { snapshotter: this.snapshotter, key, parent, labels: { ...labels } },
      this.ctx.call(opts),
    );
    return mountsFromWire(res.mounts);
  }

  /** A read-only snapshot `key` on committed `parent`; its mounts. */
  async view(key: string, parent = '', labels: Labels = {}, opts?: RequestOptions): Promise<Mount[]> {
    const res = await this.svc.unary<{ mounts?: WireMount[] }>(
      'View',
      { snapshotter: this.snapshotter, key, parent, labels: { ...labels } },
      this.ctx.call(opts),
    );
    return mountsFromWire(res.mounts);
  }

  async mounts(key: string, opts?: RequestOptions): Promise<Mount[]> {
    const res = await this.svc.unary<{ mounts?: WireMount[] }>('Mounts', { snapshotter: this.snapshotter, key }, this.ctx.call(opts));
    return mountsFromWire(res.mounts);
  }

  /** Turn active snapshot `key` into committed snapshot `name` (the key is gone afterwards). */
  async commit(name: string, key: string, labels: Labels = {}, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Commit', { snapshotter: this.snapshotter, name, key, labels: { ...labels } }, this.ctx.call(opts));
  }

  async remove(key: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Remove', { snapshotter: this.snapshotter, key }, this.ctx.call(opts));
  }

  async stat(key: string, opts?: RequestOptions): Promise<SnapshotInfo> {
    const res = await this.svc.unary<{ info?: WireSnapshotInfo }>('Stat', { snapshotter: this.snapshotter, key }, this.ctx.call(opts));
    return snapshotInfoFromWire(res.info);
  }

  /** Stat, or undefined for a missing key. */
  async find(key: string, opts?: RequestOptions): Promise<SnapshotInfo | undefined> {
    try {
      return await this.stat(key, opts);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Update a snapshot's labels. Paths `labels` or `labels.<key>`; none
   * replaces all its labels with `labels`.
   */
  async update(key: string, labels: Labels, paths: readonly string[] = [], opts?: RequestOptions): Promise<SnapshotInfo> {
    const res = await this.svc.unary<{ info?: WireSnapshotInfo }>(
      'Update',
      { snapshotter: this.snapshotter, info: { name: key, labels: { ...labels } }, updateMask: { paths: [...paths] } },
      this.ctx.call(opts),
    );
    return snapshotInfoFromWire(res.info);
  }

  /** Set (non-empty value) or remove (empty value) single labels, leaving the others. */
  label(key: string, labels: Labels, opts?: RequestOptions): Promise<SnapshotInfo> {
    return this.update(
      key,
      Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== '')),
      Object.keys(labels).map((k) => `labels.${k}`),
      opts,
    );
  }

  /** Snapshots matching any of the filters (`kind==committed`, `parent==…`, `labels."k"==v`); none means all. */
  async list(filters: readonly string[] = [], opts?: RequestOptions): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    for await (const res of this.svc.serverStream<{ info?: WireSnapshotInfo[] }>(
      'List',
      { snapshotter: this.snapshotter, filters: [...filters] },
      this.ctx.stream(opts),
    )) {
      for (const i of res.info ?? []) out.push(snapshotInfoFromWire(i));
    }
    return out;
  }

  /** Bytes and inodes used by this snapshot alone (not its parents). */
  async usage(key: string, opts?: RequestOptions): Promise<SnapshotUsage> {
    const res = await this.svc.unary<{ size?: number; inodes?: number }>('Usage', { snapshotter: this.snapshotter, key }, this.ctx.call(opts));
    return { size: Number(res.size ?? 0), inodes: Number(res.inodes ?? 0) };
  }

  /** Remove directories no snapshot owns any more. */
  async cleanup(opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Cleanup', { snapshotter: this.snapshotter }, this.ctx.call(opts));
  }
}
