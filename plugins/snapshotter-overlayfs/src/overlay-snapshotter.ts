import {
  errorKindOf,
  errorMessage,
  FailedPreconditionError,
  InvalidArgumentError,
  type Labels,
  type Mount,
  type SnapshotInfo,
  type SnapshotKind,
  type Snapshotter,
  type SnapshotUsage,
} from '@berth/plugin-api';
import { diskUsage, SnapshotDirectories, SnapshotMetaStore, type StoredSnapshot } from '@berth/snapshot-storage';
import { chmodSync, existsSync, lchownSync, mkdirSync, statSync } from 'node:fs';
import { mkdir, readFile, statfs } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LowerdirLinks } from './lowerdir-links.js';

/** mount(2) copies one page of option data, the last byte a NUL: longer options are cut off silently. */
export const MOUNT_DATA_MAX = 4095;
/**
 * Above this, lowerdir goes through short links: containerd starts shortening
 * here too (pagesize - 512), leaving room for options a mounter may add.
 */
export const MOUNT_DATA_SHORTEN = 4096 - 512;

export interface OverlaySnapshotterOptions {
  /**
   * Where to put the short links that keep long lowerdir lists within one
   * page; see LowerdirLinks. Default `/run/berth-ovl/<hash of root>`; `''`
   * turns them off, so long chains fail with a clear error instead.
   */
  readonly linkDir?: string;
  /** `index=off` on overlay mounts; default: when the kernel has the overlay `index` parameter (as containerd). */
  readonly indexOff?: boolean;
  /** `userxattr` on overlay mounts; default: inside a user namespace, off tmpfs (as containerd on kernels ≥ 5.11). */
  readonly userxattr?: boolean;
  /** Failures after the fact (a directory that would not go away); the operation itself succeeded. */
  readonly onError?: (message: string, err: unknown) => void;
}

/**
 * containerd's overlayfs snapshotter: `<root>/snapshots/<id>/fs` is the
 * snapshot's upper directory (its changes), `work` overlay's work directory;
 * metadata in `<root>/metadata.level`. Mounts are exactly containerd 1.6's:
 * a bind mount while there is one layer, otherwise
 * `overlay` with `index=off`, `workdir`, `upperdir`, `lowerdir=parent:…:base`.
 */
export class OverlaySnapshotter implements Snapshotter {
  private closed = false;

  private constructor(
    readonly root: string,
    private readonly store: SnapshotMetaStore,
    private readonly dirs: SnapshotDirectories,
    private readonly links: LowerdirLinks | undefined,
    private readonly indexOff: boolean,
    private readonly userxattr: boolean,
  ) {}

  static async open(root: string, options: OverlaySnapshotterOptions = {}): Promise<OverlaySnapshotter> {
    root = resolve(root);
    // overlay splits its options at "," and lowerdir at ":"; "\" escapes. containerd does not escape either.
    if (/[,:\\]/.test(root)) {
      throw new InvalidArgumentError(`overlayfs snapshotter root ${JSON.stringify(root)} must not contain ",", ":" or "\\"`);
    }
    await mkdir(root, { recursive: true, mode: 0o700 });
    const onError = options.onError ?? (() => {});
    const dirs = new SnapshotDirectories(join(root, 'snapshots'), onError);
    await dirs.init();
    const store = await SnapshotMetaStore.open(join(root, 'metadata.level'));
    const links = options.linkDir === '' ? undefined : new LowerdirLinks(root, options.linkDir);
    return new OverlaySnapshotter(
      root,
      store,
      dirs,
      links,
      options.indexOff ?? existsSync('/sys/module/overlay/parameters/index'),
      options.userxattr ?? (await needsUserxattr(root)),
    );
  }

  /** Where the short lowerdir links of this root live, if any (created on first use). */
  get linkDir(): string | undefined {
    return this.links?.dir;
  }

  async stat(key: string): Promise<SnapshotInfo> {
    return (await this.store.view((tx) => tx.getInfo(key))).info;
  }

  update(info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo> {
    return this.store.update((tx) => tx.updateInfo(info, paths));
  }

  /** Active snapshots are measured now (their upper directory); committed ones report what commit measured. */
  async usage(key: string): Promise<SnapshotUsage> {
    const { id, info, usage } = await this.store.view((tx) => tx.getInfo(key));
    return info.kind === 'active' ? diskUsage(this.upperPath(id)) : usage;
  }

  async mounts(key: string): Promise<Mount[]> {
    const s = await this.store.view((tx) => tx.getSnapshot(key));
    return this.mountsOf(key, s);
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
      // The kind is checked again by commitActive; measuring a view's missing upper would fail first.
      const usage = info.kind === 'active' ? await diskUsage(this.upperPath(id)) : { size: 0, inodes: 0 };
      await tx.commitActive(key, name, usage, labels);
    });
  }

  async remove(key: string): Promise<void> {
    const { id } = await this.store.update((tx) => tx.remove(key));
    // The record is gone first: a crash from here on leaves only an unowned directory, which cleanup removes.
    await this.links?.remove(id);
    await this.dirs.remove(id);
  }

  walk(fn: (info: SnapshotInfo) => Promise<void> | void, filters?: readonly string[]): Promise<void> {
    return this.store.view((tx) => tx.walk(fn, filters));
  }

  async cleanup(): Promise<void> {
    const { unowned, ids } = await this.store.update(async (tx) => {
      const ids = new Set((await tx.idMap()).keys());
      return { ids, unowned: await this.dirs.unowned(ids) };
    });
    await this.dirs.removeAll(unowned);
    await this.dirs.settle(); // and what removals left to delete: Cleanup returns with the disk clean
    await this.links?.prune(ids);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dirs.settle(); // removed snapshots' directories, still being deleted
    await this.store.close();
  }

  private async createSnapshot(kind: SnapshotKind, key: string, parent: string | undefined, labels?: Labels): Promise<Mount[]> {
    let installed: string | undefined;
    try {
      return await this.store.update(async (tx) => {
        // Inside the write lock, as containerd: cleanup (also under it) never sees the half-built directory.
        const temp = await this.dirs.createTemp();
        try {
          // Synchronous, as SnapshotDirectories' own entries: a few metadata operations.
          mkdirSync(join(temp, 'fs'));
          chmodSync(join(temp, 'fs'), 0o755);
          if (kind === 'active') {
            mkdirSync(join(temp, 'work'));
            chmodSync(join(temp, 'work'), 0o711);
          }
          const s = await tx.createSnapshot(kind, key, parent, labels);
          // Before anything is recorded: a chain too long to mount is refused here, not at mount time.
          const mounts = await this.mountsOf(key, s);
          if (s.parentIds.length > 0) {
            // The new layer's root starts as its parent's, which overlay shows as the merged root.
            const st = statSync(this.upperPath(s.parentIds[0]));
            lchownSync(join(temp, 'fs'), st.uid, st.gid);
          }
          await this.dirs.install(temp, s.id);
          installed = s.id;
          return mounts;
        } catch (err) {
          if (!installed) await this.dirs.discard(temp);
          throw err;
        }
      });
    } catch (err) {
      // The batch did not land: the installed directory belongs to no snapshot.
      if (installed) await this.dirs.remove(installed);
      throw err;
    }
  }

  private async mountsOf(key: string, s: StoredSnapshot): Promise<Mount[]> {
    if (s.parentIds.length === 0) {
      // overlay needs a lower layer: a base snapshot is its upper directory, bound.
      return [{ type: 'bind', source: this.upperPath(s.id), options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (s.kind === 'view' && s.parentIds.length === 1) {
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]), options: ['ro', 'rbind'] }];
    }
    const options: string[] = [];
    if (this.indexOff) options.push('index=off');
    if (this.userxattr) options.push('userxattr');
    if (s.kind === 'active') options.push(`workdir=${this.workPath(s.id)}`, `upperdir=${this.upperPath(s.id)}`);

    let lowerdir = `lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(':')}`;
    const size = (lower: string) => Buffer.byteLength([...options, lower].join(','));
    if (size(lowerdir) > MOUNT_DATA_SHORTEN && this.links) {
      const links = this.links;
      const paths = await links.ensure(s.parentIds).catch((err) => {
        if (errorKindOf(err)) throw err;
        throw new FailedPreconditionError(
          `snapshot ${JSON.stringify(key)} has ${s.parentIds.length} layers, too many for plain lowerdir paths, and short links cannot be made: ${errorMessage(err)} (set link_dir to a short writable directory)`,
        );
      });
      lowerdir = `lowerdir=${paths.join(':')}`;
    }
    if (size(lowerdir) > MOUNT_DATA_MAX) {
      throw new FailedPreconditionError(
        `overlay mount options of snapshot ${JSON.stringify(key)} (${s.parentIds.length} layers) take ${size(lowerdir)} bytes, ` +
          `more than mount(2) accepts (${MOUNT_DATA_MAX})${this.links ? '' : '; short lowerdir links are turned off'}`,
      );
    }
    options.push(lowerdir);
    return [{ type: 'overlay', source: 'overlay', options }];
  }

  private upperPath(id: string): string {
    return join(this.dirs.dir, id, 'fs');
  }

  private workPath(id: string): string {
    return join(this.dirs.dir, id, 'work');
  }
}

/** containerd's rule: `userxattr` inside a user namespace, unless the root is on tmpfs (kernel ≥ 5.11 assumed). */
async function needsUserxattr(root: string): Promise<boolean> {
  const uidMap = await readFile('/proc/self/uid_map', 'utf8').catch(() => '');
  const inUserNamespace = !/^\s*0\s+0\s+4294967295\s*$/m.test(uidMap);
  if (!inUserNamespace) return false;
  const TMPFS_MAGIC = 0x01021994;
  return (await statfs(root)).type !== TMPFS_MAGIC;
}
