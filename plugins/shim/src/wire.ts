/**
 * Just enough protobuf for the short-lived sub-commands (`start`, `delete`),
 * which must answer in a few milliseconds and so do not load protobufjs and
 * the .proto files that the long-lived shim uses. The tests check every
 * message here against the real .proto definitions.
 */

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

export class WireWriter {
  private readonly chunks: number[] = [];

  varint(field: number, value: number | bigint): this {
    if (value === 0 || value === 0n) return this; // proto3 default: not sent
    this.tag(field, VARINT);
    this.rawVarint(BigInt(value));
    return this;
  }

  bytes(field: number, value: Uint8Array | string): this {
    const bytes = typeof value === 'string' ? Buffer.from(value) : value;
    if (bytes.length === 0) return this;
    this.tag(field, LEN);
    this.rawVarint(BigInt(bytes.length));
    for (const b of bytes) this.chunks.push(b);
    return this;
  }

  /** A nested message, sent even when empty when `always` is set. */
  message(field: number, value: Uint8Array, always = false): this {
    if (value.length === 0 && !always) return this;
    this.tag(field, LEN);
    this.rawVarint(BigInt(value.length));
    for (const b of value) this.chunks.push(b);
    return this;
  }

  finish(): Buffer {
    return Buffer.from(this.chunks);
  }

  private tag(field: number, type: number): void {
    this.rawVarint(BigInt((field << 3) | type));
  }

  private rawVarint(v: bigint): void {
    let value = BigInt.asUintN(64, v);
    while (value > 0x7fn) {
      this.chunks.push(Number(value & 0x7fn) | 0x80);
      value >>= 7n;
    }
    this.chunks.push(Number(value));
  }
}

export type WireValue = bigint | Buffer;

/** Every field of a message by number, each value as sent (repeated fields in order). */
export function readFields(bytes: Uint8Array): Map<number, WireValue[]> {
  const fields = new Map<number, WireValue[]>();
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++] as number;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      if (shift > 63n) throw new Error('varint too long');
    }
  };
  while (pos < buf.length) {
    const tag = Number(varint());
    const field = tag >>> 3;
    let value: WireValue;
    switch (tag & 7) {
      case VARINT:
        value = varint();
        break;
      case I64:
        value = buf.subarray(pos, pos + 8);
        pos += 8;
        break;
      case LEN: {
        const length = Number(varint());
        if (pos + length > buf.length) throw new Error('truncated field');
        value = buf.subarray(pos, pos + length);
        pos += length;
        break;
      }
      case I32:
        value = buf.subarray(pos, pos + 4);
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${tag & 7}`);
    }
    const list = fields.get(field);
    if (list) list.push(value);
    else fields.set(field, [value]);
  }
  return fields;
}

export function fieldString(fields: Map<number, WireValue[]>, n: number): string {
  const v = fields.get(n)?.at(-1);
  return Buffer.isBuffer(v) ? v.toString('utf8') : '';
}

export function fieldBytes(fields: Map<number, WireValue[]>, n: number): Buffer {
  const v = fields.get(n)?.at(-1);
  return Buffer.isBuffer(v) ? v : Buffer.alloc(0);
}

export function fieldNumber(fields: Map<number, WireValue[]>, n: number): number {
  const v = fields.get(n)?.at(-1);
  return typeof v === 'bigint' ? Number(v) : 0;
}

export function fieldBool(fields: Map<number, WireValue[]>, n: number): boolean {
  return fieldNumber(fields, n) !== 0;
}

/** google.protobuf.Timestamp for a Date. */
export function encodeTimestamp(date: Date): Buffer {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  return new WireWriter()
    .varint(1, seconds)
    .varint(2, (ms - seconds * 1000) * 1e6)
    .finish();
}

/** containerd.task.v2.DeleteResponse: what `delete` prints on stdout. */
export function encodeDeleteResponse(r: { pid: number; exitStatus: number; exitedAt: Date }): Buffer {
  return new WireWriter()
    .varint(1, r.pid)
    .varint(2, r.exitStatus)
    .message(3, encodeTimestamp(r.exitedAt), true)
    .finish();
}

/** A google.protobuf.Any: its type URL and value bytes (empty input gives an empty URL). */
export function decodeAny(bytes: Uint8Array): { typeUrl: string; value: Buffer } {
  const fields = readFields(bytes);
  return { typeUrl: fieldString(fields, 1), value: fieldBytes(fields, 2) };
}
