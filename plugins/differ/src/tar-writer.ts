import { posix } from 'node:path';
import type { TarEntryType } from './tar-reader.js';

/** What `compare` writes for one member. */
export interface TarHeader {
  readonly name: string;
  readonly type: TarEntryType;
  readonly size?: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Whole seconds since the epoch. */
  readonly mtime: number;
  readonly linkname?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  readonly xattrs?: ReadonlyMap<string, Buffer>;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  directory: '5',
  fifo: '6',
};

/** Two zero blocks: the end-of-archive marker. */
export const END_OF_ARCHIVE: Buffer = Buffer.alloc(2 * BLOCK);

/** Zero bytes that round a member's data of `size` bytes up to a block. */
export function paddingFor(size: number): Buffer {
  const r = size % BLOCK;
  return r === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - r);
}

/**
 * The header blocks of one member: a PAX extended header first when a
 * value does not fit ustar (long or non-ASCII names, large ids or sizes,
 * xattrs), then the ustar header. Deterministic: PAX keys are sorted and
 * nothing depends on the clock.
 */
export function encodeHeader(h: TarHeader): Buffer {
  const pax = new Map<string, Buffer>();
  const size = h.size ?? 0;
  const name = fitString(h.name, 100, 'path', pax);
  const linkname = fitString(h.linkname ?? '', 100, 'linkpath', pax);
  const uid = fitNumber(h.uid, 8, 'uid', pax);
  const gid = fitNumber(h.gid, 8, 'gid', pax);
  const sizeField = fitNumber(size, 12, 'size', pax);
  const mtime = fitNumber(h.mtime, 12, 'mtime', pax);
  for (const [key, value] of h.xattrs ?? []) pax.set(`SCHILY.xattr.${key}`, value);

  const ustar = ustarBlock({
    name,
    mode: h.mode & 0o7777,
    uid,
    gid,
    size: sizeField,
    mtime,
    typeflag: TYPEFLAG[h.type],
    linkname,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (pax.size === 0) return ustar;
  const records = paxRecords(pax);
  const { dir, base } = posix.parse(h.name.replace(/\/+$/, ''));
  const paxHeader = ustarBlock({
    name: Buffer.from(posix.join(dir, 'PaxHeaders.0', base)).subarray(0, 100),
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: 0,
    typeflag: 'x',
    linkname: Buffer.alloc(0),
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, records, paddingFor(records.length), ustar]);
}

interface UstarFields {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}

function ustarBlock(f: UstarFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  f.name.copy(b, 0);
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b.fill(0x20, 148, 156);
  b.write(f.typeflag, 156, 'latin1');
  f.linkname.copy(b, 157);
  b.write('ustar\u000000', 257, 'latin1');
  octal(b, 329, 8, f.devmajor);
  octal(b, 337, 8, f.devminor);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  return b;
}

/** Octal digits filling `len - 1` bytes, then NUL. */
function octal(b: Buffer, off: number, len: number, value: number): void {
  b.write(`${value.toString(8).padStart(len - 1, '0')}\u0000`, off, 'latin1');
}

function fitString(value: string, len: number, key: string, pax: Map<string, Buffer>): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  // Only ASCII goes in ustar fields unannounced; anything else is also a PAX record.
  if (bytes.length <= len && bytes.length === value.length) return bytes;
  pax.set(key, bytes);
  return bytes.subarray(0, len);
}

function fitNumber(value: number, len: number, key: string, pax: Map<string, Buffer>): number {
  if (Number.isInteger(value) && value >= 0 && value < 8 ** (len - 1)) return value;
  pax.set(key, Buffer.from(String(value)));
  return 0;
}

function paxRecords(pax: Map<string, Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const key of [...pax.keys()].sort()) {
    const value = pax.get(key) as Buffer;
    const body = Buffer.byteLength(key) + value.length + 3; // ' ', '=', '\n'
    let len = body + String(body).length;
    if (String(len).length !== String(body).length) len = body + String(len).length;
    parts.push(Buffer.from(`${len} ${key}=`), value, Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}
