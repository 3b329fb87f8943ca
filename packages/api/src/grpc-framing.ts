import { GrpcCode } from '@berth/plugin-api';

/**
 * gRPC over HTTP/2, the parts a server needs beyond HTTP/2 itself: the
 * length-prefixed message framing, the status trailers' message encoding and
 * the `grpc-timeout` header (grpc's PROTOCOL-HTTP2 document).
 */

/** A message's 5-byte prefix: a compressed flag, then the length as uint32 big-endian. */
export const PREFIX_BYTES = 5;

/** One message with its prefix, uncompressed. */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + message.byteLength);
  out[0] = 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, PREFIX_BYTES);
  return out;
}

export class FramingError extends Error {
  constructor(
    message: string,
    /** The gRPC status code the call ends with. */
    readonly code: number,
  ) {
    super(message);
  }
}

/**
 * Splits a stream's DATA chunks into messages. A message that arrives in one
 * chunk is a view of that chunk; one spread over several is copied once.
 */
export class MessageDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** The length of the message being read, once its prefix is in. */
  private expected = -1;

  constructor(private readonly maxMessageBytes: number) {}

  /** The messages complete with this chunk. Throws FramingError for a message too large or compressed. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < PREFIX_BYTES) return out;
        const prefix = this.take(PREFIX_BYTES);
        if (prefix[0] !== 0) {
          // berthd announces identity only (grpc-accept-encoding); a client that compresses anyway is refused.
          throw new FramingError('compressed messages are not supported (grpc-encoding identity only)', GrpcCode.UNIMPLEMENTED);
        }
        const length = prefix.readUInt32BE(1);
        if (length > this.maxMessageBytes) {
          throw new FramingError(`message of ${length} bytes is larger than the limit, ${this.maxMessageBytes}`, GrpcCode.RESOURCE_EXHAUSTED);
        }
        this.expected = length;
      }
      if (this.buffered < this.expected) return out;
      out.push(this.take(this.expected));
      this.expected = -1;
    }
  }

  /** Whether the stream ended between messages. */
  get idle(): boolean {
    return this.expected < 0 && this.buffered === 0;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.buffered -= n;
    const first = this.chunks[0] as Buffer;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.chunks[0] as Buffer;
      const part = Math.min(chunk.length, n - at);
      chunk.copy(out, at, 0, part);
      at += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    return out;
  }
}

/** `grpc-message`: UTF-8, then every byte outside printable ASCII, and `%`, percent-encoded. */
export function encodeStatusMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** `grpc-timeout` (up to 8 digits and a unit) in milliseconds; undefined when absent or malformed. */
export function parseTimeout(value: string | undefined): number | undefined {
  const match = value === undefined ? null : /^(\d{1,8})([HMSmun])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * (TIMEOUT_UNITS[match[2] as string] as number);
}
