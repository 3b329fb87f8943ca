import { HuffmanError, huffmanDecode, type Latin1Buffer } from './huffman.js';

/**
 * HPACK (RFC 7541), the header compression of HTTP/2, for a server: a
 * decoder that keeps the peer's dynamic table, and a stateless encoder that
 * never indexes (so there is no encoder table to keep in step, and a
 * peer's SETTINGS_HEADER_TABLE_SIZE never matters to it). Names and values
 * are octets, carried as latin1 strings so that every octet round-trips.
 */

/** Appendix A: STATIC_TABLE[i - 1] is index i. */
export const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

const STATIC_LENGTH = STATIC_TABLE.length;
/** Split copies, index-aligned (slot 0 unused), so a lookup is one load and no tuple. */
const STATIC_NAMES = ['', ...STATIC_TABLE.map(([name]) => name)];
const STATIC_VALUES = ['', ...STATIC_TABLE.map(([, value]) => value)];

/** RFC 7541 §4.1 and RFC 7540 §6.5.2: an entry's, and a header's, accounted size. */
const ENTRY_OVERHEAD = 32;

const EMPTY = Buffer.alloc(0) as Latin1Buffer;

/** Malformed input: the caller answers with a connection error of type COMPRESSION_ERROR (RFC 7540 §4.3). */
export class HpackError extends Error {}

/**
 * The block decoded but its header list is over maxHeaderListSize. Unlike
 * HpackError the dynamic table is up to date (the whole block was read), so
 * the connection can go on and only the stream be refused (RFC 7540 §10.5.1).
 */
export class HeaderListTooLargeError extends HpackError {
  readonly tooLarge = true;
  constructor(
    /** The list's size by RFC 7540's measure. */
    readonly size: number,
    readonly limit: number,
  ) {
    super(`header list of ${size} bytes is larger than the limit, ${limit}`);
  }
}

/**
 * One connection's decoding context. The dynamic table is a ring of names and
 * values, newest at `head`, grown by doubling (a table of maxTableSize holds
 * at most maxTableSize / 32 entries, so growth stops early).
 */
export class HpackDecoder {
  /** SETTINGS_HEADER_TABLE_SIZE as advertised: the ceiling for size updates. */
  private readonly maxTableSize: number;
  private readonly maxHeaderListSize: number;
  /**
   * The table's current maximum size. It starts at maxTableSize rather than
   * the protocol's initial 4096: below 4096, a peer that encodes before it has
   * read our SETTINGS would evict later than we do, so keep the default.
   */
  private limit: number;
  /** Sum of the entries' sizes. */
  private size = 0;
  private names: string[] = new Array<string>(16).fill('');
  private values: string[] = new Array<string>(16).fill('');
  private mask = 15;
  private head = -1;
  private count = 0;

  /** The block being decoded and the read position in it. */
  private buf: Latin1Buffer = EMPTY;
  private pos = 0;

  constructor(opts: { maxTableSize?: number; maxHeaderListSize?: number } = {}) {
    this.maxTableSize = opts.maxTableSize ?? 4096;
    this.maxHeaderListSize = opts.maxHeaderListSize ?? 65536;
    this.limit = this.maxTableSize;
  }

  /** The dynamic table's size by RFC 7541 §4.1. */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table, newest (index 62) first; for tests and debugging. */
  tableEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head - i) & this.mask;
      out.push([this.names[slot] as string, this.values[slot] as string]);
    }
    return out;
  }

  /** One complete header block. Throws HpackError when malformed, HeaderListTooLargeError when over the limit. */
  decode(block: Uint8Array): Array<[string, string]> {
    const buf = (Buffer.isBuffer(block) ? block : Buffer.from(block.buffer, block.byteOffset, block.byteLength)) as Latin1Buffer;
    this.buf = buf;
    this.pos = 0;
    const end = buf.length;
    const out: Array<[string, string]> = [];
    let listSize = 0;
    let fields = false;
    try {
      while (this.pos < end) {
        const first = buf[this.pos] as number;
        let name: string;
        let value: string;
        if (first & 0x80) {
          // §6.1 indexed field.
          const index = this.readInt(7);
          if (index === 0) throw new HpackError('indexed field with index 0');
          if (index <= STATIC_LENGTH) {
            name = STATIC_NAMES[index] as string;
            value = STATIC_VALUES[index] as string;
          } else {
            const slot = this.slotOf(index);
            name = this.names[slot] as string;
            value = this.values[slot] as string;
          }
        } else if (first & 0x40) {
          // §6.2.1 literal with incremental indexing.
          const index = this.readInt(6);
          name = index === 0 ? this.readString() : this.nameAt(index);
          value = this.readString();
          this.insert(name, value);
        } else if (first & 0x20) {
          // §6.3 dynamic table size update: only before the block's first field (§4.2).
          if (fields) throw new HpackError('dynamic table size update after a header field');
          const size = this.readInt(5);
          if (size > this.maxTableSize) throw new HpackError(`dynamic table size update to ${size}, over the advertised ${this.maxTableSize}`);
          this.limit = size;
          while (this.size > size) this.evict();
          continue;
        } else {
          // §6.2.2 without indexing (0000) and §6.2.3 never indexed (0001): the same to a decoder.
          const index = this.readInt(4);
          name = index === 0 ? this.readString() : this.nameAt(index);
          value = this.readString();
        }
        fields = true;
        // Past the limit the rest of the block is still read, to keep the table in step, but not kept.
        listSize += name.length + value.length + ENTRY_OVERHEAD;
        if (listSize <= this.maxHeaderListSize) out.push([name, value]);
      }
    } finally {
      // Don't pin the caller's buffer between blocks.
      this.buf = EMPTY;
    }
    if (listSize > this.maxHeaderListSize) throw new HeaderListTooLargeError(listSize, this.maxHeaderListSize);
    return out;
  }

  /** §5.1: an integer with an N-bit prefix, starting at pos. Values over 2^31 - 1 are refused. */
  private readInt(prefixBits: number): number {
    const buf = this.buf;
    let pos = this.pos;
    const max = (1 << prefixBits) - 1;
    let value = (buf[pos++] as number) & max;
    if (value === max) {
      // At most 5 continuation octets: 7 * 5 bits already covers 2^31 over the prefix.
      for (let shift = 0; ; shift += 7) {
        if (shift > 28) throw new HpackError('integer encoding too long');
        if (pos >= buf.length) throw new HpackError('header block ends inside an integer');
        const byte = buf[pos++] as number;
        // Multiplication, not <<: 127 << 28 overflows int32.
        value += (byte & 0x7f) * 2 ** shift;
        if ((byte & 0x80) === 0) break;
      }
      if (value > 0x7fffffff) throw new HpackError('integer over 2^31 - 1');
    }
    this.pos = pos;
    return value;
  }

  /** §5.2: a string literal, Huffman-coded or raw, as latin1. */
  private readString(): string {
    const buf = this.buf;
    if (this.pos >= buf.length) throw new HpackError('header block ends before a string literal');
    const huffman = (buf[this.pos] as number) & 0x80;
    const length = this.readInt(7);
    const start = this.pos;
    const end = start + length;
    if (end > buf.length) throw new HpackError(`string literal of ${length} bytes runs past the header block`);
    this.pos = end;
    if (huffman === 0) return buf.latin1Slice(start, end);
    try {
      return huffmanDecode(buf, start, end);
    } catch (err) {
      throw err instanceof HuffmanError ? new HpackError(err.message) : err;
    }
  }

  /** The name at a static or dynamic index (a literal field's indexed name). */
  private nameAt(index: number): string {
    if (index <= STATIC_LENGTH) return STATIC_NAMES[index] as string;
    return this.names[this.slotOf(index)] as string;
  }

  /** The ring slot of a dynamic index (> 61); §2.3.3: past the table is an error. */
  private slotOf(index: number): number {
    const i = index - STATIC_LENGTH - 1;
    if (i >= this.count) throw new HpackError(`index ${index} is past the dynamic table (${this.count} entries)`);
    return (this.head - i) & this.mask;
  }

  /** §4.4: evict from the old end until the entry fits; one larger than the table just empties it. */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    while (this.count > 0 && this.size + size > this.limit) this.evict();
    if (size > this.limit) return;
    if (this.count > this.mask) this.grow();
    this.head = (this.head + 1) & this.mask;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.count++;
    this.size += size;
  }

  private evict(): void {
    const slot = (this.head - this.count + 1) & this.mask;
    this.size -= (this.names[slot] as string).length + (this.values[slot] as string).length + ENTRY_OVERHEAD;
    // Let the strings go; '' keeps the arrays' element kind.
    this.names[slot] = '';
    this.values[slot] = '';
    this.count--;
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const names = new Array<string>(capacity).fill('');
    const values = new Array<string>(capacity).fill('');
    // Oldest first, so the newest lands at count - 1.
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head - this.count + 1 + i) & this.mask;
      names[i] = this.names[slot] as string;
      values[i] = this.values[slot] as string;
    }
    this.names = names;
    this.values = values;
    this.mask = capacity - 1;
    this.head = this.count - 1;
  }
}

/** A static name's first index, and the index of each (name, value) pair the table has. */
const STATIC_LOOKUP = new Map<string, { index: number; values: Map<string, number> }>();
for (let index = STATIC_LENGTH; index >= 1; index--) {
  // Backwards, so the first index of a repeated name wins.
  const [name, value] = STATIC_TABLE[index - 1] as readonly [string, string];
  const entry = STATIC_LOOKUP.get(name) ?? { index, values: new Map<string, number>() };
  entry.index = index;
  entry.values.set(value, index);
  STATIC_LOOKUP.set(name, entry);
}

/** Octets for an integer with an N-bit prefix (§5.1). */
function intLength(value: number, prefixBits: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) return 1;
  let n = 2;
  for (value -= max; value >= 0x80; value = Math.floor(value / 0x80)) n++;
  return n;
}

/** Writes an integer whose prefix bits go under `flags` in the first octet; returns the next position. */
function writeInt(out: Buffer, pos: number, value: number, prefixBits: number, flags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out[pos++] = flags | value;
    return pos;
  }
  out[pos++] = flags | max;
  for (value -= max; value >= 0x80; value = Math.floor(value / 0x80)) out[pos++] = (value & 0x7f) | 0x80;
  out[pos++] = value;
  return pos;
}

/** A raw (not Huffman-coded) string literal; chars above U+00FF keep only their low byte, as latin1 does. */
function writeString(out: Buffer, pos: number, text: string): number {
  const length = text.length;
  pos = writeInt(out, pos, length, 7, 0);
  // Short strings (most header names and values) copy faster here than through a call into C++.
  if (length > 32) return pos + out.write(text, pos, 'latin1');
  for (let i = 0; i < length; i++) out[pos + i] = text.charCodeAt(i);
  return pos + length;
}

/**
 * Stateless: fields the static table has whole are indexed (`:status: 200`
 * is 0x88), the rest are literals without indexing, with the static name's
 * index where there is one. Huffman coding is left out: the headers a server
 * sends are short and the encoder stays simple.
 */
export class HpackEncoder {
  encode(headers: ReadonlyArray<readonly [string, string]>): Buffer {
    let length = 0;
    for (const [name, value] of headers) {
      const entry = STATIC_LOOKUP.get(name);
      const full = entry?.values.get(value);
      if (full !== undefined) length += intLength(full, 7);
      else if (entry !== undefined) length += intLength(entry.index, 4) + intLength(value.length, 7) + value.length;
      else length += 1 + intLength(name.length, 7) + name.length + intLength(value.length, 7) + value.length;
    }
    const out = Buffer.allocUnsafe(length);
    let pos = 0;
    for (const [name, value] of headers) {
      const entry = STATIC_LOOKUP.get(name);
      const full = entry?.values.get(value);
      if (full !== undefined) {
        pos = writeInt(out, pos, full, 7, 0x80);
      } else if (entry !== undefined) {
        pos = writeInt(out, pos, entry.index, 4, 0x00);
        pos = writeString(out, pos, value);
      } else {
        out[pos++] = 0x00;
        pos = writeString(out, pos, name);
        pos = writeString(out, pos, value);
      }
    }
    return out;
  }
}
