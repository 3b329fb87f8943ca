import { InvalidArgumentError } from '@berth/plugin-api';
import { once } from 'node:events';
import type { Writable } from 'node:stream';

/*
 * A streaming tar reader and writer: enough of ustar, PAX and GNU long names
 * for image archives (what Go's archive/tar, GNU tar and docker write). Entries
 * are read once, in order; an entry's body streams from the source without
 * being buffered whole.
 */

const BLOCK = 512;
/** PAX and GNU long-name records are metadata: refuse absurd ones rather than buffer them. */
const MAX_META_BYTES = 1024 * 1024;

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** As stored (after PAX / GNU long-name overrides), not cleaned. */
  readonly name: string;
  readonly type: TarEntryType;
  readonly size: number;
  readonly mode: number;
  readonly linkname: string;
  /** The entry's bytes. Read it before asking for the next entry, or it is skipped. */
  readonly body: AsyncIterable<Buffer>;
}

/** Pulls exact byte counts from an async iterable of chunks. */
class ByteReader {
  private buffered: Buffer[] = [];
  private length = 0;
  private readonly it: AsyncIterator<Uint8Array | string>;
  private ended = false;
  /** Bytes taken so far, for error messages. */
  position = 0;

  constructor(source: AsyncIterable<Uint8Array | string>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const r = await this.it.next();
    if (r.done) {
      this.ended = true;
      return false;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
    if (chunk.length > 0) {
      this.buffered.push(chunk);
      this.length += chunk.length;
    }
    return true;
  }

  /** Exactly `n` bytes, or fewer only at the end of the source. */
  async read(n: number): Promise<Buffer> {
    while (this.length < n && (await this.fill()));
    return this.take(Math.min(n, this.length));
  }

  private take(n: number): Buffer {
    const all = this.buffered.length === 1 ? (this.buffered[0] as Buffer) : Buffer.concat(this.buffered, this.length);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    this.position += n;
    return out;
  }

  /** Up to `n` bytes as they arrive, in pieces. */
  async *stream(n: number): AsyncIterable<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.length === 0 && !(await this.fill())) {
        throw new InvalidArgumentError(`tar archive truncated: ${left} bytes missing at offset ${this.position}`);
      }
      if (this.length === 0) continue;
      const piece = this.take(Math.min(left, this.length));
      left -= piece.length;
      yield piece;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n));
  }

  /** Cancel the source (e.g. destroy a file stream) when the reader stops early. */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function cstring(buf: Buffer, start: number, end: number): string {
  const field = buf.subarray(start, end);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

function numeric(buf: Buffer, start: number, end: number, what: string): number {
  const field = buf.subarray(start, end);
  // GNU base-256 for values that octal cannot hold.
  if ((field[0] ?? 0) & 0x80) {
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`tar header: ${what} too large`);
    return value;
  }
  const text = cstring(buf, start, end).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new InvalidArgumentError(`tar header: invalid ${what} ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

function checksumOk(header: Buffer): boolean {
  let stored: number;
  try {
    stored = numeric(header, 148, 156, 'checksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : (header[i] ?? 0);
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const len = Number.parseInt(data.subarray(at, space).toString('ascii'), 10);
    if (!Number.isInteger(len) || len <= 0 || at + len > data.length) throw new InvalidArgumentError('tar: malformed PAX header');
    const record = data.subarray(space + 1, at + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += len;
  }
  return out;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/**
 * The entries of a tar stream, in order. Throws InvalidArgumentError for
 * something that is not a tar archive or is cut short. Stopping the iteration
 * early closes the source.
 */
export async function* readTar(source: AsyncIterable<Uint8Array | string>): AsyncGenerator<TarEntry> {
  const reader = new ByteReader(source);
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  try {
    for (;;) {
      const header = await reader.read(BLOCK);
      if (header.length === 0) return; // no end marker: Go's reader takes this too
      if (header.length < BLOCK) throw new InvalidArgumentError('tar archive truncated in a header');
      if (header.every((b) => b === 0)) return; // end-of-archive marker (the second block does not matter)
      if (!checksumOk(header)) {
        throw new InvalidArgumentError(
          reader.position === BLOCK ? 'not a tar archive (bad header checksum)' : `tar archive corrupt at offset ${reader.position - BLOCK}`,
        );
      }
      const flag = String.fromCharCode(header[156] ?? 0);
      const size = numeric(header, 124, 136, 'size');
      const magic = header.subarray(257, 263).toString('latin1');
      const prefix = magic === 'ustar\0' ? cstring(header, 345, 500) : '';
      let name = cstring(header, 0, 100);
      if (prefix) name = `${prefix}/${name}`;
      let linkname = cstring(header, 157, 257);

      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > MAX_META_BYTES) throw new InvalidArgumentError(`tar: ${size}-byte metadata record refused`);
        const data = await reader.read(size);
        if (data.length < size) throw new InvalidArgumentError('tar archive truncated in a metadata record');
        await reader.skip(padding(size));
        if (flag === 'x') pax = { ...pax, ...parsePax(data) };
        else if (flag === 'L') longName = cstring(data, 0, data.length);
        else if (flag === 'K') longLink = cstring(data, 0, data.length);
        continue; // 'g' (global) records carry nothing an image archive needs
      }

      if (longName !== undefined) name = longName;
      if (longLink !== undefined) linkname = longLink;
      if (pax.path !== undefined) name = pax.path;
      if (pax.linkpath !== undefined) linkname = pax.linkpath;
      let bodySize = size;
      if (pax.size !== undefined) {
        bodySize = Number(pax.size);
        if (!Number.isSafeInteger(bodySize) || bodySize < 0) throw new InvalidArgumentError(`tar: invalid PAX size ${pax.size}`);
      }
      pax = {};
      longName = longLink = undefined;

      const type: TarEntryType =
        flag === '0' || flag === '\0' || flag === '7'
          ? 'file'
          : flag === '5'
            ? 'directory'
            : flag === '2'
              ? 'symlink'
              : flag === '1'
                ? 'hardlink'
                : 'other';
      // Links and directories carry no data whatever their size field says (Go's reader agrees).
      const dataSize = type === 'file' || type === 'other' ? bodySize : 0;
      let left = dataSize;
      let started = false;
      const body = (async function* () {
        if (started) throw new Error(`tar entry ${name}: body already read`);
        started = true;
        for await (const piece of reader.stream(left)) {
          left -= piece.length;
          yield piece;
        }
      })();
      yield { name, type, size: dataSize, mode: numeric(header, 100, 108, 'mode'), linkname, body };
      // Whatever the consumer left unread (all of it, or the rest after it stopped) is skipped.
      await body.return(undefined);
      await reader.skip(left);
      await reader.skip(padding(dataSize));
    }
  } finally {
    await reader.close();
  }
}

export interface TarFileOptions {
  readonly mode?: number;
}

/**
 * Writes a tar stream (ustar; PAX for long names and huge sizes) to a
 * Writable, honouring back-pressure. Times, owners and groups are zero, as in
 * containerd's exports, so the same images give the same bytes.
 */
export class TarWriter {
  constructor(private readonly out: Writable) {}

  async directory(name: string, mode = 0o755): Promise<void> {
    await this.header(name.endsWith('/') ? name : `${name}/`, '5', 0, mode);
  }

  /** A symbolic link (docker save links a layer shared by two images). */
  async symlink(name: string, target: string): Promise<void> {
    if (Buffer.byteLength(target) > 100) throw new Error(`tar entry ${name}: link target longer than 100 bytes`);
    await this.header(name, '2', 0, 0o777, target);
  }

  /** A regular file of `size` bytes from `body`; the body must yield exactly that many. */
  async file(name: string, size: number, body: AsyncIterable<Uint8Array> | Uint8Array, opts: TarFileOptions = {}): Promise<void> {
    await this.header(name, '0', size, opts.mode ?? 0o644);
    let written = 0;
    const pieces = body instanceof Uint8Array ? [body] : body;
    for await (const piece of pieces) {
      written += piece.length;
      if (written > size) throw new Error(`tar entry ${name}: more than the ${size} bytes declared`);
      await this.write(piece);
    }
    if (written !== size) throw new Error(`tar entry ${name}: ${written} bytes written, ${size} declared`);
    await this.write(Buffer.alloc(padding(size)));
  }

  /** The end-of-archive marker (two zero blocks). Does not end the Writable. */
  async finish(): Promise<void> {
    await this.write(Buffer.alloc(BLOCK * 2));
  }

  private async header(name: string, flag: string, size: number, mode: number, linkname = ''): Promise<void> {
    const nameBytes = Buffer.byteLength(name);
    const needsPax = nameBytes > 100 || size > 0o77777777777;
    if (needsPax) {
      const records: string[] = [];
      if (nameBytes > 100) records.push(paxRecord('path', name));
      if (size > 0o77777777777) records.push(paxRecord('size', String(size)));
      const data = Buffer.from(records.join(''));
      await this.write(encodeHeader(`PaxHeaders/${name.slice(-80)}`, 'x', data.length, 0o644));
      await this.write(data);
      await this.write(Buffer.alloc(padding(data.length)));
    }
    await this.write(encodeHeader(nameBytes > 100 ? name.slice(0, 100) : name, flag, size > 0o77777777777 ? 0 : size, mode, linkname));
  }

  private async write(buf: Uint8Array): Promise<void> {
    if (buf.length === 0) return;
    if (!this.out.write(buf)) await once(this.out, 'drain');
  }
}

function paxRecord(key: string, value: string): string {
  // The length counts its own digits.
  const body = ` ${key}=${value}\n`;
  const n = Buffer.byteLength(body);
  let len = n + 1;
  while (len !== n + String(len).length) len = n + String(len).length;
  return `${len}${body}`;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function encodeHeader(name: string, flag: string, size: number, mode: number, linkname = ''): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime
  h.write('        ', 148, 'ascii');
  h.write(flag, 156, 'ascii');
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}
