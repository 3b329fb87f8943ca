// Helpers for the differ's tests: layers built in memory, trees compared as plain data.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LayerSink, LayerSource } from '@berth/plugin-api';
import { splitDev } from '@berth/sys';
import { END_OF_ARCHIVE, encodeHeader, paddingFor, type TarHeader } from './tar-writer.js';
import { lgetxattrs } from '@berth/sys';

export const isRoot = process.getuid?.() === 0;

export type TestEntry = Partial<TarHeader> & { name: string; data?: Buffer | string };

/** A tar of `entries` (berth's own writer: PAX records, binary xattrs). Defaults: file, 0644, root, mtime 1e9. */
export function tarOf(entries: readonly TestEntry[], { end = true } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const type = e.type ?? 'file';
    parts.push(
      encodeHeader({
        mode: type === 'directory' ? 0o755 : 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_000_000_000,
        ...e,
        type,
        size: type === 'file' ? data.length : 0,
      }),
    );
    if (type === 'file') parts.push(data, paddingFor(data.length));
  }
  if (end) parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

/** A layer whose bytes come in odd-sized chunks, so every parser boundary gets crossed. */
export function layerOf(bytes: Buffer, mediaType = 'application/vnd.oci.image.layer.v1.tar', chunk = 7919): LayerSource {
  return {
    mediaType,
    digest: sha256(bytes),
    size: bytes.length,
    async *open() {
      for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
    },
  };
}

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** A zstd frame of raw (stored) blocks: enough for the decoder, no compressor needed. */
export function zstdStored(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(6);
  header.writeUInt32LE(0xfd2fb528, 0);
  header[4] = 0x00; // frame header descriptor: no content size, no checksum, window descriptor follows
  header[5] = 0x58; // window size 2^(10+11) = 2 MiB
  parts.push(header);
  const max = 128 * 1024;
  for (let off = 0; off === 0 || off < data.length; off += max) {
    const block = data.subarray(off, off + max);
    const last = off + max >= data.length ? 1 : 0;
    const bh = (block.length << 3) | (0 << 1) | last; // raw block
    parts.push(Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff]), block);
    if (last) break;
  }
  return Buffer.concat(parts);
}

export class MemorySink implements LayerSink {
  readonly chunks: Buffer[] = [];
  constructor(readonly mediaType = 'application/vnd.oci.image.layer.v1.tar') {}
  async write(chunk: Uint8Array): Promise<void> {
    this.chunks.push(Buffer.from(chunk));
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime?: number;
  size?: number;
  content?: string;
  link?: string;
  rdev?: string;
  ino?: number;
  xattrs?: Record<string, string>;
}

/**
 * Every entry under `root` with its metadata; directory times only when `dirTimes`.
 * Hard links show as the same `ino` group (first name), not the inode number.
 */
export function treeOf(
  root: string,
  opts: { dirTimes?: boolean; xattrs?: boolean; skip?: (rel: string) => boolean } = {},
): Record<string, NodeInfo> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<number, number>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (opts.skip?.(r)) continue;
      const p = join(root, r);
      const st = lstatSync(p);
      const info: NodeInfo = {
        type: st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'other',
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
      };
      if (!st.isDirectory() || opts.dirTimes) info.mtime = Math.floor(st.mtimeMs / 1000);
      if (st.isFile()) {
        info.size = st.size;
        info.content = createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16);
        if (st.nlink > 1) {
          if (!inodes.has(st.ino)) inodes.set(st.ino, inodes.size + 1);
          info.ino = inodes.get(st.ino);
        }
      }
      if (st.isSymbolicLink()) info.link = readlinkSync(p);
      if (st.isCharacterDevice() || st.isBlockDevice()) info.rdev = JSON.stringify(splitDev(st.rdev));
      if (opts.xattrs !== false && !st.isSymbolicLink()) {
        const x = lgetxattrs(p);
        for (const k of [...x.keys()]) if (k.startsWith('trusted.overlay.')) x.delete(k);
        if (x.size) info.xattrs = Object.fromEntries([...x].map(([k, v]) => [k, v.toString('hex')]));
      }
      out[r] = info;
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

export function tempDir(prefix = 'berth-differ-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}
