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
 * A message larger than this is gathered as views of the chunks it came in
 * and joined at its end; up to it, its buffer is made when its prefix comes.
 * (A client announcing a large message it never sends costs no memory.)
 */
const PREALLOCATE_BYTES = 4 * 1024 * 1024;

/**
 * Splits a stream's DATA chunks into messages. A message that arrives in one
 * chunk is a view of that chunk; one spread over several is copied into its
 * own buffer as its pieces come, so the chunks (each a socket read, 64 KiB)
 * are garbage at once instead of living until the message is whole.
 */
export class MessageDecoder {
  /** The prefix being read, when a chunk ended inside it. */
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private prefixBytes = 0;
  /** The length of the message being read, once its prefix is in. */
  private expected = -1;
  /** The message being gathered: its own buffer, or the views of its chunks (over PREALLOCATE_BYTES). */
  private message: Buffer | undefined;
  private pieces: Buffer[] = [];
  private filled = 0;

  constructor(private readonly maxMessageBytes: number) {}

  /** The messages complete with this chunk. Throws FramingError for a message too large or compressed. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.expected < 0) {
        let prefix: Buffer;
        if (this.prefixBytes === 0 && chunk.length - at >= PREFIX_BYTES) {
          prefix = chunk.subarray(at, at + PREFIX_BYTES);
          at += PREFIX_BYTES;
        } else {
          const n = Math.min(PREFIX_BYTES - this.prefixBytes, chunk.length - at);
          chunk.copy(this.prefix, this.prefixBytes, at, at + n);
          this.prefixBytes += n;
          at += n;
          if (this.prefixBytes < PREFIX_BYTES) break;
          this.prefixBytes = 0;
          prefix = this.prefix;
        }
        this.expected = this.checkedLength(prefix);
        if (chunk.length - at >= this.expected) {
          out.push(chunk.subarray(at, at + this.expected));
          at += this.expected;
          this.expected = -1;
          continue;
        }
        this.filled = 0;
        if (this.expected <= PREALLOCATE_BYTES) this.message = Buffer.allocUnsafe(this.expected);
      }
      const n = Math.min(this.expected - this.filled, chunk.length - at);
      if (this.message) chunk.copy(this.message, this.filled, at, at + n);
      else this.pieces.push(chunk.subarray(at, at + n));
      this.filled += n;
      at += n;
      if (this.filled === this.expected) {
        out.push(this.message ?? Buffer.concat(this.pieces, this.expected));
        this.message = undefined;
        this.pieces = [];
        this.expected = -1;
      }
    }
    return out;
  }

  /** Whether the stream ended between messages. */
  get idle(): boolean {
    return this.expected < 0 && this.prefixBytes === 0;
  }

  private checkedLength(prefix: Buffer): number {
    if (prefix[0] !== 0) {
      // berthd announces identity only (grpc-accept-encoding); a client that compresses anyway is refused.
      throw new FramingError('compressed messages are not supported (grpc-encoding identity only)', GrpcCode.UNIMPLEMENTED);
    }
    const length = prefix.readUInt32BE(1);
    if (length > this.maxMessageBytes) {
      throw new FramingError(`message of ${length} bytes is larger than the limit, ${this.maxMessageBytes}`, GrpcCode.RESOURCE_EXHAUSTED);
    }
    return length;
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
