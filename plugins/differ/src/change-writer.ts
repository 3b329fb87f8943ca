import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { type BigIntStats, closeSync, constants, lstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import type { Gzip } from 'node:zlib';
import { type AppliedLayer, InvalidArgumentError, type LayerSink, NotImplementedError } from '@berth/plugin-api';
import { gzipStream } from './compression.js';
import { splitDev } from '@berth/sys';
import { END_OF_ARCHIVE, encodeHeader, paddingFor, type TarHeader } from './tar-writer.js';
import type { TarEntryType } from './tar-reader.js';
import { lgetxattrs } from '@berth/sys';

const FLUSH_AT = 256 * 1024;
const READ_CHUNK = 256 * 1024;

/**
 * The uncompressed tar going out of `compare`: hashed and counted for the
 * diff ID, gzip-compressed when the sink's media type asks, and handed to
 * the sink in chunks of at least FLUSH_AT bytes.
 */
export class LayerOutput {
  private readonly hash: Hash = createHash('sha256');
  private size = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly gzip?: Gzip;
  private readonly pump?: Promise<void>;

  constructor(private readonly sink: LayerSink) {
    const mt = sink.mediaType;
    if (/\+zstd$|\.zstd$/.test(mt)) throw new NotImplementedError(`compare cannot write ${mt}: no zstd compressor`);
    if (/\+gzip$|\.gzip$/.test(mt)) {
      const gz = gzipStream();
      this.gzip = gz;
      this.pump = (async () => {
        for await (const chunk of gz) await sink.write(chunk as Buffer);
      })();
      this.pump.catch(() => {}); // observed in write() and end()
    } else if (!/(\.tar|\/tar|v1\.tar)$/.test(mt) && mt !== '') {
      throw new InvalidArgumentError(`compare cannot write media type ${mt}`);
    }
  }

  async write(buf: Buffer): Promise<void> {
    this.hash.update(buf);
    this.size += buf.length;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= FLUSH_AT) await this.flush();
  }

  async end(): Promise<AppliedLayer> {
    await this.flush();
    if (this.gzip) {
      this.gzip.end();
      await this.pump;
    }
    return { diffId: `sha256:${this.hash.digest('hex')}`, size: this.size };
  }

  /** Stop after a failure: no more bytes reach the sink. */
  abort(): void {
    this.gzip?.destroy();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.gzip) {
      await this.sink.write(chunk);
      return;
    }
    if (!this.gzip.write(chunk)) await Promise.race([once(this.gzip, 'drain'), this.pump]);
  }
}

/**
 * Turns changes found by a walk into tar members, as containerd's
 * changeWriter: parents of every change are written first (once), a
 * regular file with several links is written once and its other names
 * become hard links, deletions are `.wh.<name>` files, and nothing depends
 * on the clock, so the same trees give the same bytes.
 */
export class ChangeWriter {
  private readonly addedDirs = new Set<string>();
  /** First name written for an inode with several links. */
  private readonly inodeSrc = new Map<string, string>();
  /** Unchanged names of such an inode seen before any of its names was written. */
  private readonly inodeRefs = new Map<string, string[]>();

  constructor(
    private readonly out: LayerOutput,
    /** The tree the changes are read from. */
    private readonly root: string,
    private readonly signal?: AbortSignal,
  ) {}

  /** `rel` was added or changed; `st` is its lstat in the root. */
  async changed(rel: string, st: BigIntStats): Promise<void> {
    this.signal?.throwIfAborted();
    await this.includeParents(rel);
    const path = `${this.root}/${rel}`;
    const header = headerOf(rel, path, st);
    let links: string[] = [];
    if (header.type === 'file' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const source = this.inodeSrc.get(key);
      if (source !== undefined) {
        await this.out.write(encodeHeader({ ...header, type: 'hardlink', linkname: source, size: 0 }));
        return;
      }
      this.inodeSrc.set(key, rel);
      links = this.inodeRefs.get(key) ?? [];
      this.inodeRefs.delete(key);
    }
    await this.out.write(encodeHeader(header));
    if (header.type === 'file') await this.copy(path, Number(st.size), rel);
    if (header.type === 'directory') this.addedDirs.add(rel);
    for (const name of links) {
      await this.includeParents(name);
      await this.out.write(encodeHeader({ ...header, name, type: 'hardlink', linkname: rel, size: 0 }));
    }
  }

  /** `rel` is the same in both trees; it matters only as another name of a multiply-linked file. */
  async unchanged(rel: string, st: BigIntStats): Promise<void> {
    if (!st.isFile() || st.nlink < 2n) return;
    const key = `${st.dev}:${st.ino}`;
    const source = this.inodeSrc.get(key);
    if (source !== undefined) {
      await this.includeParents(rel);
      const header = headerOf(rel, `${this.root}/${rel}`, st);
      await this.out.write(encodeHeader({ ...header, type: 'hardlink', linkname: source, size: 0 }));
      return;
    }
    const refs = this.inodeRefs.get(key);
    if (refs) refs.push(rel);
    else this.inodeRefs.set(key, [rel]);
  }

  /** `rel` was deleted. */
  async deleted(rel: string): Promise<void> {
    this.signal?.throwIfAborted();
    await this.includeParents(rel);
    const slash = rel.lastIndexOf('/');
    const name = `${rel.slice(0, slash + 1)}.wh.${rel.slice(slash + 1)}`;
    await this.out.write(encodeHeader({ name, type: 'file', mode: 0, uid: 0, gid: 0, mtime: 0, size: 0 }));
  }

  /** Directory `rel` hides everything below it in the lower tree. */
  async opaque(rel: string): Promise<void> {
    await this.includeParents(`${rel}/.wh..wh..opq`);
    await this.out.write(encodeHeader({ name: `${rel}/.wh..wh..opq`, type: 'file', mode: 0, uid: 0, gid: 0, mtime: 0, size: 0 }));
  }

  async finish(): Promise<void> {
    await this.out.write(END_OF_ARCHIVE);
  }

  private async includeParents(rel: string): Promise<void> {
    let slash = rel.indexOf('/');
    while (slash !== -1) {
      const dir = rel.slice(0, slash);
      if (!this.addedDirs.has(dir)) {
        const path = `${this.root}/${dir}`;
        await this.out.write(encodeHeader(headerOf(dir, path, lstatSync(path, { bigint: true }))));
        this.addedDirs.add(dir);
      }
      slash = rel.indexOf('/', slash + 1);
    }
  }

  private async copy(path: string, size: number, rel: string): Promise<void> {
    // O_NOFOLLOW: had the file been swapped for a symlink since the walk, this fails instead of archiving its target.
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let left = size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, left));
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) throw new InvalidArgumentError(`${rel} shrank while it was being read`);
        left -= n;
        await this.out.write(n === buf.length ? buf : buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    await this.out.write(paddingFor(size));
  }
}

export function entryType(st: BigIntStats): TarEntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets are not archived, as tar skips them
}

/** xattrs worth carrying in a layer: overlay's own attributes are not. */
export function layerXattrs(path: string): Map<string, Buffer> {
  const all = lgetxattrs(path);
  for (const name of all.keys()) {
    if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) all.delete(name);
  }
  return all;
}

function headerOf(rel: string, path: string, st: BigIntStats): TarHeader {
  const type = entryType(st);
  if (!type) throw new InvalidArgumentError(`${rel}: cannot archive a socket`);
  const dev = type === 'char' || type === 'block' ? splitDev(st.rdev) : { major: 0, minor: 0 };
  return {
    name: type === 'directory' ? `${rel}/` : rel,
    type,
    size: type === 'file' ? Number(st.size) : 0,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    // Whole seconds, as containerd writes them.
    mtime: Number(st.mtimeNs / 1_000_000_000n),
    linkname: type === 'symlink' ? readlinkSync(path) : '',
    devmajor: dev.major,
    devminor: dev.minor,
    xattrs: layerXattrs(path),
  };
}
