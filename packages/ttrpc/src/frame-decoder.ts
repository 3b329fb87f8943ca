/** ttrpc frame header: u32 BE length, u32 BE stream id, u8 type, u8 flags. */
export const FRAME_HEADER_LENGTH = 10;
/** ttrpc refuses messages (frame bodies) longer than 4 MiB. */
export const MESSAGE_LENGTH_MAX = 4 << 20;

export const MessageType = { REQUEST: 1, RESPONSE: 2 } as const;

export interface FrameHeader {
  readonly length: number;
  readonly streamId: number;
  readonly type: number;
  readonly flags: number;
}

/**
 * A complete frame, or the header of one whose body exceeded
 * MESSAGE_LENGTH_MAX: its body was skipped, and ttrpc answers such a frame
 * with RESOURCE_EXHAUSTED on its stream and keeps the connection.
 */
export type Frame = (FrameHeader & { readonly kind: 'message'; readonly payload: Buffer }) | (FrameHeader & { readonly kind: 'oversize' });

export function encodeFrame(streamId: number, type: number, payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_LENGTH + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(streamId, 4);
  frame[8] = type;
  frame[9] = 0;
  frame.set(payload, FRAME_HEADER_LENGTH);
  return frame;
}

/**
 * Reassembles frames from a byte stream whatever its chunking: a frame may
 * arrive split across many chunks, and one chunk may carry several frames.
 * Oversized bodies are skipped as they stream past, never buffered.
 */
export class FrameDecoder {
  private parts: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | undefined;
  private skipping = 0;

  /** The frames that this chunk completes, in order. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    while (chunk.length > 0) {
      if (this.skipping > 0) {
        const n = Math.min(this.skipping, chunk.length);
        this.skipping -= n;
        chunk = chunk.subarray(n);
        if (this.skipping === 0) frames.push({ kind: 'oversize', ...this.takeHeader() });
        continue;
      }
      const want = this.header ? this.header.length : FRAME_HEADER_LENGTH;
      const n = Math.min(want - this.buffered, chunk.length);
      this.parts.push(chunk.subarray(0, n));
      this.buffered += n;
      chunk = chunk.subarray(n);
      if (this.buffered < want) break;
      const bytes = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.buffered);
      this.parts = [];
      this.buffered = 0;
      if (this.header) {
        frames.push({ kind: 'message', ...this.takeHeader(), payload: bytes });
        continue;
      }
      const header = parseHeader(bytes);
      if (header.length > MESSAGE_LENGTH_MAX) {
        this.header = header;
        this.skipping = header.length;
      } else if (header.length === 0) {
        frames.push({ kind: 'message', ...header, payload: Buffer.alloc(0) });
      } else {
        this.header = header;
      }
    }
    return frames;
  }

  private takeHeader(): FrameHeader {
    const header = this.header as FrameHeader;
    this.header = undefined;
    return header;
  }
}

function parseHeader(bytes: Buffer): FrameHeader {
  return { length: bytes.readUInt32BE(0), streamId: bytes.readUInt32BE(4), type: bytes[8], flags: bytes[9] };
}
