import { InvalidArgumentError, NotImplementedError } from '@berth/plugin-api';

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

/** One member of a tar stream, with its PAX / GNU long-name extensions applied. */
export interface TarEntry {
  /** As stored (not cleaned); decoded as UTF-8. */
  readonly name: string;
  readonly type: TarEntryType;
  /** Bytes of data that follow the header (0 for every type but `file`). */
  readonly size: number;
  /** Permission bits, set-id and sticky bits included. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch, fractional when a PAX record gave nanoseconds. */
  readonly mtime: number;
  readonly atime?: number;
  readonly linkname: string;
  readonly devmajor: number;
  readonly devminor: number;
  /** SCHILY.xattr.* PAX records: raw bytes, as Go's archive/tar writes them. */
  readonly xattrs: ReadonlyMap<string, Buffer>;
}

export interface TarLimits {
  /** Largest PAX or GNU long-name member read into memory (Go's archive/tar allows 1 MiB). */
  readonly maxExtendedHeader: number;
  /** Longest entry or link name in bytes (PATH_MAX). */
  readonly maxName: number;
}

export const DEFAULT_TAR_LIMITS: TarLimits = { maxExtendedHeader: 1 << 20, maxName: 4096 };

const BLOCK = 512;
const XATTR_PREFIX = 'SCHILY.xattr.';
const XATTR_NAME_MAX = 255;
const XATTR_SIZE_MAX = 65536;
const EMPTY = new Uint8Array(0);

interface Pending {
  pax?: Map<string, Buffer>;
  longName?: string;
  longLink?: string;
}

/**
 * A pull parser for ustar, PAX and GNU tar streams that never holds more
 * than one source chunk plus one extended header. Written for the differ
 * rather than using tar-stream because layers carry binary PAX values
 * (SCHILY.xattr.security.capability), which tar-stream decodes as UTF-8,
 * and because every size it reads into memory must be bounded here.
 */
export class TarReader {
  private readonly it: AsyncIterator<Uint8Array>;
  private buf: Uint8Array = EMPTY;
  private pos = 0;
  private done = false;
  /** Data bytes of the current entry not yet read, and the padding after them. */
  private remaining = 0;
  private padding = 0;
  private current: TarEntry | undefined;
  private ended = false;

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly limits: TarLimits = DEFAULT_TAR_LIMITS,
  ) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** The next entry, or undefined at the end of the archive. Unread data of the previous entry is skipped. */
  async next(): Promise<TarEntry | undefined> {
    if (this.ended) return undefined;
    await this.skip(this.remaining + this.padding);
    this.remaining = this.padding = 0;
    this.current = undefined;
    const pending: Pending = {};
    for (;;) {
      const block = await this.readBlock();
      if (!block) {
        this.ended = true;
        if (pending.pax || pending.longName || pending.longLink) throw truncated('after an extended header');
        return undefined;
      }
      if (isZero(block)) {
        // The end-of-archive marker is two zero blocks; one zero block at the very end is accepted, as Go does.
        const second = await this.readBlock();
        if (second && !isZero(second)) throw new InvalidArgumentError('invalid tar: a zero block followed by data');
        this.ended = true;
        return undefined;
      }
      const header = parseHeader(block);
      switch (header.typeflag) {
        case 'x':
          pending.pax = parsePax(await this.readExtended(header.size, 'PAX header'));
          continue;
        case 'g':
          // Global PAX headers are ignored, as containerd does; still bounded.
          await this.readExtended(header.size, 'global PAX header');
          continue;
        case 'L':
          pending.longName = cString(await this.readExtended(header.size, 'GNU long name'));
          continue;
        case 'K':
          pending.longLink = cString(await this.readExtended(header.size, 'GNU long link name'));
          continue;
      }
      const entry = this.buildEntry(header, pending);
      this.current = entry;
      this.remaining = entry.size;
      this.padding = padOf(entry.size);
      return entry;
    }
  }

  /** The data of the current entry, as slices of the source chunks (valid until the next read). */
  async *body(): AsyncGenerator<Uint8Array> {
    while (this.remaining > 0) {
      if (this.pos >= this.buf.length && !(await this.fill())) throw truncated(`in the data of ${this.current?.name}`);
      const n = Math.min(this.remaining, this.buf.length - this.pos);
      const chunk = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.remaining -= n;
      yield chunk;
    }
  }

  /** Read the rest of the source past the end of the archive (the diff ID covers every byte). */
  async drain(): Promise<void> {
    this.pos = this.buf.length;
    while (await this.fill()) this.pos = this.buf.length;
  }

  /** Stop reading: releases the source (a decompressor, a content reader) when an apply fails midway. */
  async close(): Promise<void> {
    this.done = true;
    await this.it.return?.();
  }

  private buildEntry(h: RawHeader, pending: Pending): TarEntry {
    const pax = pending.pax;
    let name = pending.longName ?? h.name;
    let linkname = pending.longLink ?? h.linkname;
    let { size, uid, gid, mtime } = h;
    let atime = h.atime;
    const xattrs = new Map<string, Buffer>();
    if (pax) {
      for (const [key, value] of pax) {
        if (key.startsWith(XATTR_PREFIX)) {
          const attr = key.slice(XATTR_PREFIX.length);
          if (attr.length === 0 || attr.includes('\0') || Buffer.byteLength(attr) > XATTR_NAME_MAX || value.length > XATTR_SIZE_MAX) {
            throw new InvalidArgumentError(`invalid tar: xattr ${JSON.stringify(attr.slice(0, 64))} too long`);
          }
          xattrs.set(attr, value);
          continue;
        }
        if (key.startsWith('GNU.sparse.')) throw new NotImplementedError('sparse tar entries are not supported');
        switch (key) {
          case 'path':
            name = value.toString('utf8');
            break;
          case 'linkpath':
            linkname = value.toString('utf8');
            break;
          case 'size':
            size = paxInteger(key, value);
            break;
          case 'uid':
            uid = paxInteger(key, value);
            break;
          case 'gid':
            gid = paxInteger(key, value);
            break;
          case 'mtime':
            mtime = paxTime(key, value);
            break;
          case 'atime':
            atime = paxTime(key, value);
            break;
        }
      }
    }
    // Linux ids are 32 bits and (uid_t)-1 means "leave unchanged" to chown.
    if (uid >= 0xffffffff || gid >= 0xffffffff) throw new InvalidArgumentError(`invalid tar: ${name} has an out-of-range owner`);
    if (Buffer.byteLength(name) > this.limits.maxName || Buffer.byteLength(linkname) > this.limits.maxName) {
      throw new InvalidArgumentError(`invalid tar: a name longer than ${this.limits.maxName} bytes`);
    }
    if (name.includes('\0') || linkname.includes('\0')) throw new InvalidArgumentError('invalid tar: a name contains NUL');
    let type: TarEntryType;
    switch (h.typeflag) {
      case '0':
      case '7':
        type = 'file';
        break;
      case '\0':
        type = name.endsWith('/') ? 'directory' : 'file';
        break;
      case '1':
        type = 'hardlink';
        break;
      case '2':
        type = 'symlink';
        break;
      case '3':
        type = 'char';
        break;
      case '4':
        type = 'block';
        break;
      case '5':
        type = 'directory';
        break;
      case '6':
        type = 'fifo';
        break;
      case 'S':
        throw new NotImplementedError('sparse tar entries are not supported');
      default:
        throw new InvalidArgumentError(`invalid tar: unsupported entry type ${JSON.stringify(h.typeflag)} for ${name}`);
    }
    // As Go's archive/tar: only regular files carry data; other types' size fields are ignored.
    if (type !== 'file') size = 0;
    return {
      name,
      type,
      size,
      mode: h.mode & 0o7777,
      uid,
      gid,
      mtime,
      ...(atime !== undefined ? { atime } : {}),
      linkname,
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs,
    };
  }

  private async readExtended(size: number, what: string): Promise<Buffer> {
    if (size > this.limits.maxExtendedHeader) {
      throw new InvalidArgumentError(`invalid tar: ${what} of ${size} bytes exceeds the ${this.limits.maxExtendedHeader}-byte limit`);
    }
    const data = await this.readExact(size, what);
    await this.skip(padOf(size));
    return data;
  }

  /** One 512-byte block, undefined at a clean end of the source; a partial block is truncation. */
  private async readBlock(): Promise<Uint8Array | undefined> {
    if (this.pos >= this.buf.length && !(await this.fill())) return undefined;
    return this.readExact(BLOCK, 'a header');
  }

  private async readExact(n: number, what: string): Promise<Buffer> {
    if (this.buf.length - this.pos >= n) {
      const out = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      if (this.pos >= this.buf.length && !(await this.fill())) throw truncated(`in ${what}`);
      const take = Math.min(n - filled, this.buf.length - this.pos);
      out.set(this.buf.subarray(this.pos, this.pos + take), filled);
      this.pos += take;
      filled += take;
    }
    return out;
  }

  private async skip(n: number): Promise<void> {
    while (n > 0) {
      if (this.pos >= this.buf.length && !(await this.fill())) throw truncated(`in the data of ${this.current?.name}`);
      const take = Math.min(n, this.buf.length - this.pos);
      this.pos += take;
      n -= take;
    }
  }

  private async fill(): Promise<boolean> {
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      if (r.value.length > 0) {
        this.buf = r.value;
        this.pos = 0;
        return true;
      }
    }
    return false;
  }
}

interface RawHeader {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  atime?: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
}

function parseHeader(b: Uint8Array): RawHeader {
  const stored = parseNumeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed) throw new InvalidArgumentError('invalid tar: header checksum mismatch');
  const magic = Buffer.from(b.buffer, b.byteOffset + 257, 8).toString('latin1');
  const ustar = magic.startsWith('ustar\0');
  const gnu = magic === 'ustar  \0';
  let name = cString(b.subarray(0, 100));
  if (ustar && b[345] !== 0) name = `${cString(b.subarray(345, 500))}/${name}`;
  const header: RawHeader = {
    name,
    mode: parseNumeric(b, 100, 8, 'mode'),
    uid: parseNumeric(b, 108, 8, 'uid'),
    gid: parseNumeric(b, 116, 8, 'gid'),
    size: parseNumeric(b, 124, 12, 'size'),
    mtime: parseNumeric(b, 136, 12, 'mtime'),
    typeflag: String.fromCharCode(b[156]),
    linkname: cString(b.subarray(157, 257)),
    devmajor: ustar || gnu ? parseNumeric(b, 329, 8, 'devmajor') : 0,
    devminor: ustar || gnu ? parseNumeric(b, 337, 8, 'devminor') : 0,
  };
  if (gnu) {
    const atime = parseNumeric(b, 345, 12, 'atime');
    if (atime !== 0) header.atime = atime;
  }
  if (header.size < 0 || header.uid < 0 || header.gid < 0) throw new InvalidArgumentError('invalid tar: negative size or id');
  return header;
}

/** An octal field (spaces and NULs around it allowed) or GNU base-256. */
function parseNumeric(b: Uint8Array, off: number, len: number, what: string): number {
  if (b[off] & 0x80) {
    // Two's complement, as Go's archive/tar: -a-1 == ^a.
    const inv = b[off] & 0x40 ? 0xff : 0;
    let v = 0;
    for (let i = 0; i < len; i++) {
      let c = b[off + i] ^ inv;
      if (i === 0) c &= 0x7f;
      v = v * 256 + c;
      if (v > Number.MAX_SAFE_INTEGER) throw new InvalidArgumentError(`invalid tar: ${what} out of range`);
    }
    return inv ? -v - 1 : v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new InvalidArgumentError(`invalid tar: bad ${what} field`);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) {
    if (b[i] !== 0x20 && b[i] !== 0) throw new InvalidArgumentError(`invalid tar: bad ${what} field`);
  }
  return digits ? v : 0;
}

/** `%d %s=%s\n` records, values kept as bytes. */
function parsePax(data: Buffer): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    if (data[off] === 0) break; // NUL padding some writers leave
    const space = data.indexOf(0x20, off);
    if (space === -1 || space - off > 20) throw new InvalidArgumentError('invalid tar: malformed PAX record');
    const lenText = data.toString('latin1', off, space);
    if (!/^[0-9]+$/.test(lenText)) throw new InvalidArgumentError('invalid tar: malformed PAX record length');
    const len = Number(lenText);
    const end = off + len;
    if (len <= space - off + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw new InvalidArgumentError('invalid tar: malformed PAX record');
    }
    const eq = data.indexOf(0x3d, space + 1);
    if (eq === -1 || eq >= end - 1) throw new InvalidArgumentError('invalid tar: malformed PAX record');
    const key = data.toString('utf8', space + 1, eq);
    records.set(key, Buffer.from(data.subarray(eq + 1, end - 1)));
    off = end;
  }
  return records;
}

function paxInteger(key: string, value: Buffer): number {
  const text = value.toString('latin1');
  if (!/^[0-9]{1,16}$/.test(text)) throw new InvalidArgumentError(`invalid tar: PAX ${key}=${JSON.stringify(text.slice(0, 32))}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`invalid tar: PAX ${key} out of range`);
  return n;
}

function paxTime(key: string, value: Buffer): number {
  const text = value.toString('latin1');
  if (!/^-?[0-9]{1,16}(\.[0-9]{0,30})?$/.test(text)) throw new InvalidArgumentError(`invalid tar: PAX ${key}=${JSON.stringify(text.slice(0, 32))}`);
  return Number(text);
}

function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return Buffer.from(b.buffer, b.byteOffset, nul === -1 ? b.length : nul).toString('utf8');
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

function padOf(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

function truncated(where: string): InvalidArgumentError {
  return new InvalidArgumentError(`truncated tar: the layer ends ${where}`);
}
