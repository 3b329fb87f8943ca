import {
  errorKindOf,
  type Labels,
  type Mount,
  type SnapshotInfo,
  type SnapshotKind,
  type Snapshotter,
  type SnapshotUsage,
  UnavailableError,
} from '@berth/plugin-api';
import { diskUsage, SnapshotDirectories, SnapshotMetaStore, type StoredSnapshot } from '@berth/snapshot-storage';
import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { copyTree } from './copy-tree.js';

export interface NativeSnapshotterOptions {
  /** Failures after the fact (a directory that would not go away); the operation itself succeeded. */
  readonly onError?: (message: string, err: unknown) => void;
}

/** Tries when a parent is replaced (removed and committed again under its name) while it is being copied. */
const COPY_ATTEMPTS = 3;

/**
 * containerd's native snapshotter: every active snapshot is a full copy of
 * its parent in `<root>/snapshots/<id>`, mounted with a bind mount; a view
 * of a committed snapshot binds that snapshot read-only and has no
 * directory of its own. Works on any filesystem; costs a copy per layer.
 */
export class NativeSnapshotter implements Snapshotter {
  private closed = false;

  private constructor(
    readonly root: string,
    private readonly store: SnapshotMetaStore,
    private readonly dirs: SnapshotDirectories,
  ) {}

  static async open(root: string, options: NativeSnapshotterOptions = {}): Promise<NativeSnapshotter> {
    root = resolve(root);
    await mkdir(root, { recursive: true, mode: 0o700 });
    const dirs = new SnapshotDirectories(join(root, 'snapshots'), options.onError);
    await dirs.init();
    const store = await SnapshotMetaStore.open(join(root, 'metadata.level'));
    return new NativeSnapshotter(root, store, dirs);
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return (await this.store.view((tx) => tx.getInfo(key))).info;
  }

  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo> {
    return this.store.update((tx) => tx.updateInfo(info, paths));
  }

  /** Active snapshots are measured now (the whole copy, as containerd); committed ones report what commit measured. */
  async usage(key: string): Promise<SnapshotUsage> {
    const { id, info, usage } = await this.store.view((tx) => tx.getInfo(key));
    return info.kind === 'active' ? diskUsage(this.dirs.path(id)) : usage;
  }

  async mounts(key: string): Promise<Mount[]> {
    return this.mountsOf(await this.store.view((tx) => tx.getSnapshot(key)));
  }

  prepare(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]> {
    return this.createSnapshot('active', key, parent, labels);
  }

  view(key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]> {
    return this.createSnapshot('view', key, parent, labels);
  }

  async commit(name: string, key: string, labels?: Labels): Promise<void> {
    await this.store.update(async (tx) => {
      const { id, info } = await tx.getInfo(key);
      const usage = info.kind === 'active' ? await diskUsage(this.dirs.path(id)) : { size: 0, inodes: 0 };
      await tx.commitActive(key, name, usage, labels);
    });
  }

  async remove(key: string): Promise<void> {
    const { id } = await this.store.update((tx) => tx.remove(key));
    // The record is gone first: a crash from here on leaves only an unowned directory, which cleanup removes.
    await this.dirs.remove(id);
  }

  walk(fn: (info: SnapshotInfo) => Promise<void> | void, filters?: readonly string[]): Promise<void> {
    return this.store.view((tx) => tx.walk(fn, filters));
  }

  async cleanup(): Promise<void> {
    const unowned = await this.store.update(async (tx) => this.dirs.unowned(new Set((await tx.idMap()).keys())));
    await this.dirs.removeAll(unowned);
    await this.dirs.settle(); // and what removals left to delete: Cleanup returns with the disk clean
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dirs.settle(); // removed snapshots' directories, still being deleted
    await this.store.close();
  }

  /**
   * The copy of the parent happens before the write transaction, so a large
   * copy does not hold up every other snapshot operation; the transaction
   * then checks that the parent is still the one copied.
   */
  private async createSnapshot(kind: SnapshotKind, key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]> {
    parent = parent || undefined;
    // A view of a committed snapshot binds it read-only: nothing to copy, no directory.
    const needsDir = kind === 'active' || parent === undefined;
    for (let attempt = 1; ; attempt++) {
      let temp: string | undefined;
      let copiedFrom: string | undefined;
      let installed: string | undefined;
      try {
        if (needsDir) {
          if (parent !== undefined) {
            // Fail fast, with the errors the transaction would give, before copying anything.
            const checked = await this.store.view(async (tx) => {
              const p = await tx.getInfo(parent);
              const taken = await tx.getInfo(key).then(() => true, (err) => (errorKindOf(err) === 'not-found' ? false : Promise.reject(err)));
              return { parentId: p.id, taken, parentKind: p.info.kind };
            });
            if (checked.parentKind === 'committed' && !checked.taken) copiedFrom = checked.parentId;
          }
          temp = await this.dirs.createTemp();
          if (copiedFrom !== undefined) await this.copyParent(parent as string, copiedFrom, temp);
          else await chmod(temp, 0o755);
        }
        return await this.store.update(async (tx) => {
          const s = await tx.createSnapshot(kind, key, parent, labels);
          if (temp !== undefined) {
            if (s.parentIds[0] !== copiedFrom) throw new ParentChanged();
            await this.dirs.install(temp, s.id);
            installed = s.id;
          }
          return this.mountsOf(s);
        });
      } catch (err) {
        if (installed) await this.dirs.remove(installed);
        else if (temp) await this.dirs.discard(temp);
        if (!(err instanceof ParentChanged)) throw err;
        if (attempt === COPY_ATTEMPTS) {
          throw new UnavailableError(`parent ${JSON.stringify(parent)} of ${JSON.stringify(key)} kept changing while it was copied`);
        }
      }
    }
  }

  /** A failed copy because the parent went away is reported as the transaction would: NotFound, or a retry. */
  private async copyParent(parent: string, parentId: string, temp: string): Promise<void> {
    try {
      await copyTree(this.dirs.path(parentId), temp);
    } catch (err) {
      const now = await this.store.view((tx) => tx.getInfo(parent));
      if (now.id !== parentId) throw new ParentChanged();
      throw err;
    }
  }

  private mountsOf(s: StoredSnapshot): Mount[] {
    const source = s.kind === 'active' || s.parentIds.length === 0 ? this.dirs.path(s.id) : this.dirs.path(s.parentIds[0]);
    return [{ type: 'bind', source, options: ['rbind', s.kind === 'view' ? 'ro' : 'rw'] }];
  }
}

class ParentChanged extends Error {}
