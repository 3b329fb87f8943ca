import { chmodSync, lchownSync, lstatSync, mkdirSync, readlinkSync, type Stats, unlinkSync, utimesSync } from 'node:fs';
import { InvalidArgumentError } from '@berth/plugin-api';
import { lgetxattr, lgetxattrs, lsetxattr } from '@berth/sys';

/** A directory of the tree being written, reached without leaving the root. */
export interface DirRef {
  /** Absolute path in the target; every component is a real directory (no symlink) once `exists`. */
  readonly abs: string;
  /** Path below the root, '' for the root itself. */
  readonly rel: string;
  /** The same directory in the overlay lower layers that show through, top first. */
  readonly lowers: readonly string[];
  /** Whether it exists in the target (an overlay upper may have it only below). */
  readonly exists: boolean;
}

export interface ResolverTarget {
  readonly root: string;
  /** Overlay lowerdirs, top first; empty for a plain directory. */
  readonly lowers: readonly string[];
  /** `trusted.overlay.` or, with the userxattr mount option, `user.overlay.`; undefined for a plain directory. */
  readonly overlayXattrPrefix?: string;
}

/** Symlinks followed while resolving one path, as Linux's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

/** Overlay marks a deleted name with a 0/0 character device. */
export function isOverlayWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

type Child =
  | { kind: 'missing'; hidesLower: boolean }
  | { kind: 'symlink'; target: string }
  | { kind: 'dir'; exists: boolean; lowers: string[] }
  | { kind: 'other' };

/**
 * Resolves paths inside a root the way a chroot would, as containerd's
 * fs.RootPath: every component is looked up with lstat, symlinks are
 * followed with `/` meaning the root and `..` stopping at the root, so no
 * path it returns can lead outside. For an overlay upper, names missing
 * from the upper are looked up in the lower layers (whiteouts and opaque
 * directories respected), so the view is the merged one; directories that
 * exist only below are created in the upper with their lower metadata, as
 * overlay's copy-up would.
 *
 * Resolved directories are cached; callers invalidate after any change that
 * can alter what a path resolves to (a symlink made, something removed, a
 * whiteout or opaque directory made).
 */
export class RootResolver {
  private readonly cache = new Map<string, DirRef>();
  readonly rootDir: DirRef;

  constructor(private readonly target: ResolverTarget) {
    this.rootDir = { abs: target.root, rel: '', lowers: target.lowers, exists: true };
  }

  get overlay(): boolean {
    return this.target.overlayXattrPrefix !== undefined;
  }

  invalidate(): void {
    this.cache.clear();
  }

  /**
   * The directory that `comps` (already cleaned: no '', '.', '..') names. Missing directories are created
   * when `create`; otherwise a missing one gives undefined. A non-directory on the way is InvalidArgument.
   */
  resolve(comps: readonly string[], create: boolean): DirRef | undefined {
    if (comps.length === 0) return this.rootDir;
    const stack: DirRef[] = [this.rootDir];
    // Components still to walk, last one first.
    const work = comps.slice().reverse();
    let links = 0;
    while (work.length > 0) {
      const c = work.pop() as string;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const cur = stack[stack.length - 1];
      const rel = cur.rel === '' ? c : `${cur.rel}/${c}`;
      const cached = this.cache.get(rel);
      if (cached) {
        stack.push(cached);
        continue;
      }
      const child = this.lookup(cur, c);
      let ref: DirRef;
      switch (child.kind) {
        case 'symlink': {
          if (++links > MAX_SYMLINKS) throw new InvalidArgumentError(`too many levels of symbolic links resolving ${comps.join('/')}`);
          if (child.target.startsWith('/')) stack.length = 1;
          const parts = child.target.split('/');
          for (let i = parts.length - 1; i >= 0; i--) work.push(parts[i]);
          continue;
        }
        case 'other':
          throw new InvalidArgumentError(`${rel} is not a directory (resolving ${comps.join('/')})`);
        case 'missing':
          if (!create) return undefined;
          ref = { abs: `${cur.abs}/${c}`, rel, lowers: [], exists: false };
          this.makeDir(cur, ref, child.hidesLower);
          break;
        case 'dir':
          ref = { abs: `${cur.abs}/${c}`, rel, lowers: child.lowers, exists: child.exists };
          if (!ref.exists) {
            if (!create) {
              stack.push(ref);
              continue;
            }
            this.makeDir(cur, ref, false);
          }
          break;
      }
      ref = { ...ref, exists: true };
      this.cache.set(rel, ref);
      stack.push(ref);
    }
    return stack[stack.length - 1];
  }

  /** The entries of `name` in `lowers` that show through, top first, for an overlay; [] otherwise. */
  lowerDirs(lowers: readonly string[], name: string): string[] {
    const out: string[] = [];
    for (const dir of lowers) {
      const path = `${dir}/${name}`;
      const st = lstatOrUndefined(path);
      if (!st) continue;
      if (!st.isDirectory()) break; // a file or whiteout hides what lies below
      out.push(path);
      if (this.isOpaque(path)) break;
    }
    return out;
  }

  /** Whether `name` is visible in the lower layers below `dir` (anything but a whiteout). */
  existsBelow(dir: DirRef, name: string): boolean {
    for (const lower of dir.lowers) {
      const st = lstatOrUndefined(`${lower}/${name}`);
      if (!st) continue;
      return !isOverlayWhiteout(st);
    }
    return false;
  }

  isOpaque(path: string): boolean {
    const prefix = this.target.overlayXattrPrefix;
    return prefix !== undefined && lgetxattr(path, `${prefix}opaque`)?.toString() === 'y';
  }

  setOpaque(path: string): void {
    lsetxattr(path, `${this.target.overlayXattrPrefix}opaque`, Buffer.from('y'));
    this.invalidate();
  }

  private lookup(dir: DirRef, name: string): Child {
    const st = dir.exists ? lstatOrUndefined(`${dir.abs}/${name}`) : undefined;
    if (st) {
      if (this.overlay && isOverlayWhiteout(st)) return { kind: 'missing', hidesLower: true };
      if (st.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(`${dir.abs}/${name}`) };
      if (!st.isDirectory()) return { kind: 'other' };
      const opaque = this.overlay && this.isOpaque(`${dir.abs}/${name}`);
      return { kind: 'dir', exists: true, lowers: opaque ? [] : this.lowerDirs(dir.lowers, name) };
    }
    for (let i = 0; i < dir.lowers.length; i++) {
      const path = `${dir.lowers[i]}/${name}`;
      const lst = lstatOrUndefined(path);
      if (!lst) continue;
      if (isOverlayWhiteout(lst)) return { kind: 'missing', hidesLower: false };
      if (lst.isSymbolicLink()) return { kind: 'symlink', target: readlinkSync(path) };
      if (!lst.isDirectory()) return { kind: 'other' };
      const lowers = this.isOpaque(path) ? [path] : [path, ...this.lowerDirs(dir.lowers.slice(i + 1), name)];
      return { kind: 'dir', exists: false, lowers };
    }
    return { kind: 'missing', hidesLower: false };
  }

  /**
   * mkdir one missing directory. In an overlay upper it takes the metadata of the lower
   * directory it stands for, as copy-up does; one replacing a whiteout hides what was below.
   */
  private makeDir(parent: DirRef, ref: DirRef, replacesWhiteout: boolean): void {
    if (replacesWhiteout) {
      unlinkSync(ref.abs);
      this.invalidate();
    }
    mkdirSync(ref.abs, 0o755);
    const template = ref.lowers[0];
    if (template) {
      const st = lstatSync(template);
      lchownSync(ref.abs, st.uid, st.gid);
      chmodSync(ref.abs, st.mode & 0o7777);
      for (const [name, value] of lgetxattrs(template)) {
        if (!this.isOverlayXattr(name)) setXattrTolerant(ref.abs, name, value);
      }
      utimesSync(ref.abs, st.atime, st.mtime);
    } else {
      chmodSync(ref.abs, 0o755);
    }
    if (replacesWhiteout && parent.lowers.length > 0 && this.lowerDirs(parent.lowers, lastName(ref.rel)).length > 0) {
      this.setOpaque(ref.abs);
    }
  }

  /** overlay's own attributes (trusted.overlay.* / user.overlay.*), which a layer must never set. */
  isOverlayXattr(name: string): boolean {
    return name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.');
  }
}

/** Copy-up skips attributes the upper filesystem cannot hold, as containerd's copyUpXAttrs does. */
function setXattrTolerant(path: string, name: string, value: Buffer): void {
  try {
    lsetxattr(path, name, value);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EOPNOTSUPP') throw err;
  }
}

function lastName(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}
