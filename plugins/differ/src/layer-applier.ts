import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import {
  BerthError,
  CanceledError,
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  UnknownError,
} from '@berth/plugin-api';
import { mknod, S_IFBLK, S_IFCHR, S_IFIFO } from '@berth/sys';
import { type DirRef, isOverlayWhiteout, type ResolverTarget, RootResolver } from './root-resolver.js';
import type { TarEntry, TarReader } from './tar-reader.js';
import { fsetxattr, lsetxattr } from '@berth/sys';

export interface ApplierOptions {
  /** Create character and block devices from the layer; when false such an entry fails the apply. */
  readonly allowDevices: boolean;
  readonly signal?: AbortSignal;
  readonly log?: Logger;
}

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';
/** aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): Docker and containerd skip these. */
const WHITEOUT_META_PREFIX = '.wh..wh.';

const O_NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/**
 * The components of an entry name inside the root. A leading `/` is
 * stripped (containerd does the same); `.` and empty parts drop out; `..`
 * climbing above the root is refused rather than clamped, as Docker does,
 * because no honest layer has one.
 */
export function cleanEntryName(name: string): string[] {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new InvalidArgumentError(`layer entry ${JSON.stringify(name)} points outside the root`);
      out.pop();
    } else {
      out.push(part);
    }
  }
  return out;
}

/** containerd's boundTime: times outside what the filesystem stores become the epoch. */
function boundTime(t: number): number {
  return Number.isFinite(t) && t >= 0 && t < 2 ** 34 ? t : 0;
}

/**
 * Writes the entries of one layer into a root, as containerd's archive.Apply:
 * later entries replace earlier ones, OCI whiteouts delete (or, for an
 * overlay upper, become overlay whiteouts and opaque directories), and
 * directory times are set once their children are in place.
 *
 * Every path it touches is `<resolved parent>/<name>` where the parent was
 * reached through RootResolver (symlinks followed as in a chroot), and the
 * last component is created with calls that do not follow a symlink there
 * (O_EXCL|O_NOFOLLOW, mkdir, symlink, link, mknod, lchown, lutimes, l*xattr),
 * after removing whatever stood there. So nothing a layer contains, nor
 * anything already in the target, can make it write outside the root.
 * It assumes nothing else writes to the target meanwhile (a fresh snapshot).
 */
export class LayerApplier {
  private readonly resolver: RootResolver;
  /** Directory times to set at the end, by resolved path. */
  private readonly dirTimes = new Map<string, [atime: number, mtime: number]>();
  /** Paths written by this layer (with their parents), for opaque whiteouts on a plain directory. */
  private readonly unpacked = new Set<string>();

  constructor(
    target: ResolverTarget,
    private readonly options: ApplierOptions,
  ) {
    this.resolver = new RootResolver(target);
  }

  private get overlay(): boolean {
    return this.resolver.overlay;
  }

  async apply(reader: TarReader): Promise<void> {
    const { signal } = this.options;
    for (;;) {
      if (signal?.aborted) throw new CanceledError('apply canceled', { cause: signal.reason });
      const entry = await reader.next();
      if (!entry) break;
      try {
        await this.entry(entry, reader);
      } catch (err) {
        throw wrap(err, entry.name);
      }
    }
    this.setDirTimes();
  }

  private async entry(e: TarEntry, reader: TarReader): Promise<void> {
    const comps = cleanEntryName(e.name);
    if (comps.length === 0) return; // the root itself: containerd ignores it too
    const base = comps[comps.length - 1];
    const parentComps = comps.slice(0, -1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      this.whiteout(parentComps, base);
      return;
    }
    if ((e.type === 'char' || e.type === 'block') && !this.options.allowDevices) {
      throw new InvalidArgumentError(`device node ${e.name} refused: this differ does not allow devices`);
    }
    const parent = this.resolver.resolve(parentComps, true) as DirRef;
    this.markUnpacked(parent.rel);
    const path = `${parent.abs}/${base}`;
    const rel = parent.rel === '' ? base : `${parent.rel}/${base}`;
    if (!this.overlay) this.unpacked.add(rel);
    switch (e.type) {
      case 'file':
        await this.file(path, e, reader);
        break;
      case 'directory':
        this.directory(parent, base, path, rel, e);
        break;
      case 'symlink':
        this.replace(path, () => symlinkSync(e.linkname, path));
        this.resolver.invalidate();
        this.metadataByPath(path, e, true);
        break;
      case 'hardlink':
        this.hardlink(path, e);
        break;
      case 'char':
      case 'block':
      case 'fifo': {
        const kind = e.type === 'char' ? S_IFCHR : e.type === 'block' ? S_IFBLK : S_IFIFO;
        this.replace(path, () => mknod(path, kind | 0o600, e.devmajor, e.devminor));
        // In an overlay upper a 0/0 character device is a whiteout: what resolves where may have changed.
        if (this.overlay && kind === S_IFCHR && e.devmajor === 0 && e.devminor === 0) this.resolver.invalidate();
        this.metadataByPath(path, e, false);
        break;
      }
    }
  }

  private async file(path: string, e: TarEntry, reader: TarReader): Promise<void> {
    let fd = -1;
    this.replace(path, () => {
      fd = openSync(path, O_NEW_FILE, 0o600);
    });
    try {
      for await (const chunk of reader.body()) {
        let off = 0;
        while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
      }
      // After the data (a write clears set-id bits and capabilities) and chown (which clears them too).
      fchownSync(fd, e.uid, e.gid);
      fchmodSync(fd, e.mode);
      this.xattrs(e, (name, value) => fsetxattr(fd, name, value), false);
      const [atime, mtime] = times(e);
      futimesSync(fd, atime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  private directory(parent: DirRef, base: string, path: string, rel: string, e: TarEntry): void {
    let replaced = false;
    try {
      mkdirSync(path, 0o700);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!lstatSync(path).isDirectory()) {
        this.remove(path);
        mkdirSync(path, 0o700);
        replaced = true;
      }
    }
    // A directory standing where this layer put a non-directory (or a whiteout) must not show the lower one's entries.
    if (replaced && this.overlay && this.resolver.lowerDirs(parent.lowers, base).length > 0) {
      this.resolver.setOpaque(path);
    }
    const fd = openSync(path, O_DIR);
    try {
      fchownSync(fd, e.uid, e.gid);
      fchmodSync(fd, e.mode);
      this.xattrs(e, (name, value) => fsetxattr(fd, name, value), false);
    } finally {
      closeSync(fd);
    }
    this.dirTimes.set(rel, times(e));
  }

  private hardlink(path: string, e: TarEntry): void {
    const targetComps = cleanEntryName(e.linkname);
    if (targetComps.length === 0) throw new InvalidArgumentError(`hard link ${e.name} to the root`);
    const targetParent = this.resolver.resolve(targetComps.slice(0, -1), false);
    const source = targetParent?.exists ? `${targetParent.abs}/${targetComps[targetComps.length - 1]}` : undefined;
    const st = source ? lstatOrUndefined(source) : undefined;
    if (!source || !st || (this.overlay && isOverlayWhiteout(st))) {
      throw new InvalidArgumentError(`hard link ${e.name}: target ${e.linkname} is not in the layer`);
    }
    if (st.isDirectory()) throw new InvalidArgumentError(`hard link ${e.name}: target ${e.linkname} is a directory`);
    if (source === path) return;
    // link(2) does not follow a symlink at `source`: the link is to the symlink itself.
    this.replace(path, () => linkSync(source, path));
  }

  private whiteout(parentComps: string[], base: string): void {
    if (base === WHITEOUT_OPAQUE) {
      this.opaque(parentComps);
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) return;
    const name = base.slice(WHITEOUT_PREFIX.length);
    if (name === '' || name === '.' || name === '..') throw new InvalidArgumentError(`invalid whiteout ${base}`);
    const parent = this.resolver.resolve(parentComps, false);
    if (!parent) return; // nothing there to delete
    const path = `${parent.abs}/${name}`;
    if (parent.exists && lstatOrUndefined(path)) this.remove(path);
    if (this.overlay && this.resolver.existsBelow(parent, name)) {
      const upper = this.resolver.resolve(parentComps, true) as DirRef;
      mknod(`${upper.abs}/${name}`, S_IFCHR, 0, 0);
    }
    this.resolver.invalidate();
  }

  private opaque(dirComps: string[]): void {
    const dir = this.resolver.resolve(dirComps, false);
    if (!dir) return;
    if (this.overlay) {
      if (!dir.exists && dir.lowers.length === 0) return;
      const upper = this.resolver.resolve(dirComps, true) as DirRef;
      this.resolver.setOpaque(upper.abs);
      return;
    }
    this.markUnpacked(dir.rel);
    for (const name of readdirSync(dir.abs)) {
      const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
      if (!this.unpacked.has(rel)) this.remove(`${dir.abs}/${name}`);
    }
  }

  /** Record `rel` and its parents as written by this layer (plain directories only). */
  private markUnpacked(rel: string): void {
    if (this.overlay) return;
    while (rel !== '' && !this.unpacked.has(rel)) {
      this.unpacked.add(rel);
      rel = rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
    }
  }

  /** Run `create`; if something is in the way, remove it and run it again. */
  private replace(path: string, create: () => void): void {
    try {
      create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      this.remove(path);
      create();
    }
  }

  /** Remove whatever is at `path` (never following a symlink there). */
  private remove(path: string): void {
    const st = lstatSync(path);
    if (st.isDirectory()) {
      rmSync(path, { recursive: true, force: true });
      this.resolver.invalidate();
    } else {
      unlinkSync(path);
      if (st.isSymbolicLink() || (this.overlay && isOverlayWhiteout(st))) this.resolver.invalidate();
    }
  }

  /** Owner, mode, xattrs and times of a symlink or device node, by path (none of these calls follows a final symlink but chmod, which is skipped for symlinks). */
  private metadataByPath(path: string, e: TarEntry, symlink: boolean): void {
    lchownSync(path, e.uid, e.gid);
    if (!symlink) chmodSync(path, e.mode);
    this.xattrs(e, (name, value) => lsetxattr(path, name, value), symlink);
    const [atime, mtime] = times(e);
    lutimesSync(path, atime, mtime);
  }

  private xattrs(e: TarEntry, set: (name: string, value: Buffer) => void, symlink: boolean): void {
    for (const [name, value] of e.xattrs) {
      // overlay reads its own attributes from the upper: a layer must not forge opaque dirs or redirects.
      if (this.resolver.isOverlayXattr(name)) {
        this.options.log?.warn('ignored overlay xattr in layer', { entry: e.name, xattr: name });
        continue;
      }
      try {
        set(name, value);
      } catch (err) {
        const code = (err as { code?: string }).code;
        // As containerd: a filesystem without xattrs, or a security.* attribute this process may not set, is skipped.
        const tolerated =
          code === 'EOPNOTSUPP' || (code === 'EPERM' && (name.startsWith('security.') || (symlink && name.startsWith('user.'))));
        if (!tolerated) throw err;
        this.options.log?.warn('ignored xattr in layer', { entry: e.name, xattr: name, code });
      }
    }
  }

  private setDirTimes(): void {
    for (const [rel, [atime, mtime]] of this.dirTimes) {
      // Resolve again: a later entry may have replaced a parent.
      const dir = this.resolver.resolve(rel.split('/'), false);
      if (dir?.exists && dir.rel === rel) lutimesSync(dir.abs, atime, mtime);
    }
  }
}

function times(e: TarEntry): [number, number] {
  const mtime = boundTime(e.mtime);
  // containerd: atime is the later of the two.
  const atime = e.atime !== undefined && boundTime(e.atime) > mtime ? boundTime(e.atime) : mtime;
  return [atime, mtime];
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** System errors while applying an entry, as berth errors naming the entry. */
function wrap(err: unknown, name: string): Error {
  if (err instanceof BerthError || (err as { kind?: unknown }).kind) return err as Error;
  const code = (err as { code?: string }).code;
  const message = `applying layer entry ${JSON.stringify(name)}: ${err instanceof Error ? err.message : String(err)}`;
  switch (code) {
    case 'ENOTDIR':
    case 'EISDIR':
    case 'ELOOP':
    case 'ENAMETOOLONG':
    case 'EEXIST':
    case 'EINVAL':
    case 'ENOENT':
    case 'EMLINK':
    case 'ERR_INVALID_ARG_VALUE':
      return new InvalidArgumentError(message, { cause: err });
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
    case 'ENOSPC':
    case 'EDQUOT':
      return new FailedPreconditionError(message, { cause: err });
    default:
      return new UnknownError(message, { cause: err });
  }
}
