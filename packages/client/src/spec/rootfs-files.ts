import type { Mount } from '@berth/plugin-api';
import { lstat, readFile, readlink } from 'node:fs/promises';
import { posix } from 'node:path';

/**
 * Reads small files (/etc/passwd, /etc/group) out of a container's root
 * filesystem without mounting it. containerd's WithUser mounts the snapshot
 * read-only in a temporary folder; reading the layer folders that the
 * snapshot's mounts name gives the same answer for these files, needs no
 * privileges beyond reading them, and leaves nothing mounted behind.
 */
export interface RootfsFiles {
  /** The file's bytes; undefined when it does not exist (or a layer above deleted it). */
  read(path: string): Promise<Buffer | undefined>;
}

const MAX_LINKS = 16;

/** A root folder on this machine (an unmanaged rootfs, or a bind snapshot). */
export function rootfsFromDirectory(root: string): RootfsFiles {
  return layeredRootfs([root]);
}

/**
 * From snapshot mounts: `bind` (native snapshotter) or `overlay` (upperdir,
 * then lowerdirs, top first). Undefined for anything else, or for mounts
 * whose folders this process cannot see (a daemon on another machine).
 */
export function rootfsFromMounts(mounts: readonly Mount[]): RootfsFiles | undefined {
  if (mounts.length !== 1) return undefined;
  const [m] = mounts;
  if (!m) return undefined;
  if (m.type === 'bind' || m.type === 'rbind' || m.options.includes('bind') || m.options.includes('rbind')) {
    return layeredRootfs([m.source]);
  }
  if (m.type === 'overlay') {
    const layers: string[] = [];
    const upper = m.options.find((o) => o.startsWith('upperdir='));
    if (upper) layers.push(upper.slice('upperdir='.length));
    const lower = m.options.find((o) => o.startsWith('lowerdir='));
    if (lower) layers.push(...lower.slice('lowerdir='.length).split(':'));
    return layers.length > 0 ? layeredRootfs(layers) : undefined;
  }
  return undefined;
}

/** An overlay whiteout: a character device 0/0 hides the name in the layers below. */
const isWhiteout = (st: { isCharacterDevice(): boolean; rdev: number }) => st.isCharacterDevice() && st.rdev === 0;

function layeredRootfs(layers: readonly string[]): RootfsFiles {
  // Resolve one path, top layer first; symlinks resolve inside the rootfs, never outside it.
  const read = async (path: string, hops: number): Promise<Buffer | undefined> => {
    const rel = posix.normalize(`/${path}`).slice(1);
    const parts = rel.split('/');
    for (const layer of layers) {
      // A whiteout of a parent folder in this layer hides everything below it.
      let hidden = false;
      for (let i = 1; i < parts.length; i++) {
        const st = await lstat(posix.join(layer, ...parts.slice(0, i))).catch(() => undefined);
        if (st && isWhiteout(st)) hidden = true;
        if (hidden) break;
      }
      if (hidden) return undefined;
      const file = posix.join(layer, rel);
      const st = await lstat(file).catch(() => undefined);
      if (!st) continue;
      if (isWhiteout(st)) return undefined;
      if (st.isSymbolicLink()) {
        if (hops >= MAX_LINKS) throw new Error(`${path}: too many levels of symbolic links`);
        const target = await readlink(file);
        return read(target.startsWith('/') ? target : posix.join(posix.dirname(`/${rel}`), target), hops + 1);
      }
      if (!st.isFile()) return undefined;
      return readFile(file);
    }
    return undefined;
  };
  return { read: (path) => read(path, 0) };
}
