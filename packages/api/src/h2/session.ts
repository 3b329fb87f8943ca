import type { Socket } from 'node:net';
import { HeaderListTooLargeError, HpackDecoder, HpackEncoder, HpackError } from './hpack.js';
import {
  ConnectionError,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  FRAME_HEADER_BYTES,
  Flag,
  FrameType,
  frame,
  frameHeader,
  goawayFrame,
  MAX_ALLOWED_FRAME_SIZE,
  MAX_WINDOW,
  PREFACE,
  rstStreamFrame,
  Setting,
  StreamError,
  settingsFrame,
  windowUpdateFrame,
} from './frames.js';

/*
 * The server side of an HTTP/2 connection (RFC 9113), as much of it as a gRPC
 * server needs: no TLS, no server push, priorities ignored.
 *
 * Why not node:http2: a unary gRPC answer is HEADERS, DATA and trailing
 * HEADERS. node:http2 asks for trailers only after the DATA's write has
 * completed, and sends them from a later turn of the event loop, so every
 * answer left as two socket writes, the client seeing its status 0.1–0.35 ms
 * after its message (`perf trace` of berthd: median 0.2 ms over 254 answers,
 * 5.5 ms per `ctr containers create`, whose ~50 calls each wait for the last
 * one's status). Here every frame made in one turn of the event loop goes out
 * in one write.
 */

/** Bytes one `flush` joins into a single buffer; above it, the pieces go out corked. */
const JOIN_LIMIT = 256 * 1024;

export interface H2SessionOptions {
  /** Each stream's receive window, advertised as SETTINGS_INITIAL_WINDOW_SIZE. */
  readonly streamWindow: number;
  /** The connection's receive window, opened with a WINDOW_UPDATE after the settings. */
  readonly connectionWindow: number;
  readonly maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a larger request header block is a connection error. */
  readonly maxHeaderListSize: number;
  /** A new request stream, its headers decoded. */
  readonly onStream: (stream: H2Stream) => void;
  /** Why the session ended in error (for a debug log); called at most once. */
  readonly onError?: (err: Error) => void;
}

type HeaderList = ReadonlyArray<readonly [string, string]>;

const encoder = new HpackEncoder();

/** A header block waiting for its CONTINUATION frames. */
interface PendingBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  readonly chunks: Buffer[];
  size: number;
}

export class H2Session {
  private readonly streams = new Map<number, H2Stream>();
  private readonly decoder: HpackDecoder;
  private input: Buffer | undefined;
  private prefaceSeen = false;
  private settingsSeen = false;
  private block: PendingBlock | undefined;
  /** The highest stream id the client opened. */
  private lastStreamId = 0;
  private goingAway = false;
  private ended = false;
  private readonly closeListeners: Array<() => void> = [];

  // What the client allows us to send.
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  peerInitialWindow = DEFAULT_WINDOW;
  private sendWindow = DEFAULT_WINDOW;

  // What we allow the client to send on the connection: available, and consumed but not yet given back.
  private recvAvailable: number;
  private recvConsumed = 0;

  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  /** The socket's buffer is over its mark: DATA waits for 'drain'. */
  socketBlocked = false;
  /** Streams with DATA waiting for window or for the socket. */
  private readonly blocked = new Set<H2Stream>();

  constructor(
    private readonly socket: Socket,
    readonly opts: H2SessionOptions,
  ) {
    this.decoder = new HpackDecoder({ maxHeaderListSize: opts.maxHeaderListSize });
    this.recvAvailable = opts.connectionWindow;
    socket.setNoDelay?.(true);
    this.send(
      settingsFrame([
        [Setting.MAX_CONCURRENT_STREAMS, opts.maxConcurrentStreams],
        [Setting.INITIAL_WINDOW_SIZE, opts.streamWindow],
        [Setting.MAX_HEADER_LIST_SIZE, opts.maxHeaderListSize],
        [Setting.ENABLE_PUSH, 0],
      ]),
    );
    if (opts.connectionWindow > DEFAULT_WINDOW) this.send(windowUpdateFrame(0, opts.connectionWindow - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.drained());
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.terminate());
    socket.on('end', () => this.terminate());
  }

  /** Called once, when the connection is gone. */
  onClose(fn: () => void): void {
    if (this.ended) fn();
    else this.closeListeners.push(fn);
  }

  /**
   * Graceful close: GOAWAY naming the last stream the client opened, streams
   * opened after it refused, and the connection ended once the open ones are done.
   */
  close(): void {
    if (this.ended || this.goingAway) return;
    this.goingAway = true;
    this.send(goawayFrame(this.lastStreamId, ErrorCode.NO_ERROR));
    this.endIfIdle();
  }

  /** Cut the connection now; open streams close as reset. */
  destroy(): void {
    this.socket.destroy();
    this.terminate();
  }

  // ---- output

  /** Queue bytes; everything queued in one turn of the event loop goes out together. */
  send(buf: Buffer): void {
    if (this.ended) return;
    this.out.push(buf);
    this.outBytes += buf.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    if (out.length === 0 || this.ended) return;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    let ok: boolean;
    if (out.length === 1) ok = this.socket.write(out[0] as Buffer);
    else if (bytes <= JOIN_LIMIT) ok = this.socket.write(Buffer.concat(out, bytes));
    else {
      this.socket.cork();
      ok = true;
      for (const piece of out) ok = this.socket.write(piece);
      this.socket.uncork();
    }
    if (!ok) this.socketBlocked = true;
  }

  private drained(): void {
    this.socketBlocked = false;
    this.pumpBlocked();
  }

  /** HEADERS (and CONTINUATION when the block is larger than the client's frame size). */
  sendHeaders(streamId: number, headers: HeaderList, endStream: boolean): void {
    const block = encoder.encode(headers);
    const max = this.peerMaxFrameSize;
    const endFlag = endStream ? Flag.END_STREAM : 0;
    if (block.length <= max) {
      this.send(frame(FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId, block));
      return;
    }
    for (let at = 0; at < block.length; at += max) {
      const last = at + max >= block.length;
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      const flags = (at === 0 ? endFlag : 0) | (last ? Flag.END_HEADERS : 0);
      this.send(frame(type, flags, streamId, block.subarray(at, at + max)));
    }
  }

  /**
   * Send what `stream` has queued as far as the windows and the socket allow;
   * its trailers follow its last DATA. Returns whether everything went.
   */
  pump(stream: H2Stream): boolean {
    while (stream.outQueue.length > 0) {
      if (this.socketBlocked || this.sendWindow <= 0 || stream.sendWindow <= 0) {
        this.blocked.add(stream);
        return false;
      }
      const chunk = stream.outQueue[0] as Buffer;
      const n = Math.min(chunk.length, this.sendWindow, stream.sendWindow, this.peerMaxFrameSize);
      this.send(frameHeader(n, FrameType.DATA, 0, stream.id));
      this.send(n === chunk.length ? chunk : chunk.subarray(0, n));
      this.sendWindow -= n;
      stream.sendWindow -= n;
      if (n === chunk.length) stream.outQueue.shift();
      else stream.outQueue[0] = chunk.subarray(n);
    }
    this.blocked.delete(stream);
    stream.sentAll();
    if (!this.socketBlocked) stream.notifyWritable();
    return true;
  }

  private pumpBlocked(): void {
    for (const stream of [...this.blocked]) {
      if (this.socketBlocked || this.sendWindow <= 0) break;
      this.pump(stream);
    }
    if (!this.socketBlocked) for (const stream of this.streams.values()) stream.notifyWritable();
  }

  resetStream(stream: H2Stream, code: number): void {
    this.send(rstStreamFrame(stream.id, code));
    this.forget(stream);
  }

  /** A stream is done: no longer counted, its pending output dropped. */
  forget(stream: H2Stream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    this.endIfIdle();
  }

  /** Give back window for `n` bytes of DATA the application has taken (or dropped). */
  consumed(stream: H2Stream | undefined, n: number): void {
    if (n <= 0 || this.ended) return;
    this.recvConsumed += n;
    if (this.recvConsumed >= this.opts.connectionWindow / 4) {
      this.send(windowUpdateFrame(0, this.recvConsumed));
      this.recvAvailable += this.recvConsumed;
      this.recvConsumed = 0;
    }
    if (stream && !stream.remoteEnded && !stream.closed) {
      stream.recvConsumed += n;
      if (stream.recvConsumed >= this.opts.streamWindow / 4) {
        this.send(windowUpdateFrame(stream.id, stream.recvConsumed));
        stream.recvAvailable += stream.recvConsumed;
        stream.recvConsumed = 0;
      }
    }
  }

  private endIfIdle(): void {
    if (this.goingAway && this.streams.size === 0 && !this.ended) {
      this.flush();
      this.socket.end();
    }
  }

  // ---- input

  /**
   * Frames are parsed in place in the chunks the socket reads (64 KiB at a
   * time). A frame cut between two reads is completed in `input` alone:
   * joining the whole rest of the chunk to it instead would, at every read
   * of a stream of 16 KiB DATA frames, copy 1.25 times the bytes received.
   */
  private receive(chunk: Buffer): void {
    try {
      let buf = chunk;
      if (!this.prefaceSeen) {
        buf = this.input ? Buffer.concat([this.input, chunk]) : chunk;
        this.input = undefined;
        if (buf.length < PREFACE.length) {
          if (!PREFACE.subarray(0, buf.length).equals(buf)) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
          this.input = buf;
          return;
        }
        if (!PREFACE.equals(buf.subarray(0, PREFACE.length))) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
        this.prefaceSeen = true;
        buf = buf.subarray(PREFACE.length);
      } else if (this.input) {
        const rest = this.completeFrame(chunk);
        if (rest === undefined) return;
        buf = rest;
      }
      let at = 0;
      while (!this.ended && buf.length - at >= FRAME_HEADER_BYTES) {
        const length = frameLength(buf, at);
        if (buf.length - at < FRAME_HEADER_BYTES + length) break;
        this.dispatchFrame(buf, at, length);
        at += FRAME_HEADER_BYTES + length;
      }
      if (at < buf.length && !this.ended) this.input = buf.subarray(at);
    } catch (err) {
      if (err instanceof ConnectionError) this.connectionError(err);
      else this.fail(err as Error);
    }
  }

  /**
   * Feed `chunk` to the frame waiting in `input`: the frame, once whole, is
   * handled and the rest of the chunk returned; undefined while it is not.
   */
  private completeFrame(chunk: Buffer): Buffer | undefined {
    let input = this.input as Buffer;
    let used = 0;
    if (input.length < FRAME_HEADER_BYTES) {
      used = Math.min(FRAME_HEADER_BYTES - input.length, chunk.length);
      input = Buffer.concat([input, chunk.subarray(0, used)]);
      if (input.length < FRAME_HEADER_BYTES) {
        this.input = input;
        return undefined;
      }
    }
    const length = frameLength(input, 0);
    const need = FRAME_HEADER_BYTES + length - input.length;
    if (chunk.length - used < need) {
      this.input = Buffer.concat([input, chunk.subarray(used)]);
      return undefined;
    }
    this.input = undefined;
    this.dispatchFrame(Buffer.concat([input, chunk.subarray(used, used + need)]), 0, length);
    return chunk.subarray(used + need);
  }

  /** Handle the frame at `at` of `buf`; a stream error resets that stream and the connection goes on. */
  private dispatchFrame(buf: Buffer, at: number, length: number): void {
    const type = buf[at + 3] as number;
    const flags = buf[at + 4] as number;
    const streamId = buf.readUInt32BE(at + 5) & 0x7fffffff;
    const payload = buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
    try {
      this.onFrame(type, flags, streamId, payload);
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      const stream = this.streams.get(err.streamId);
      if (stream) stream.reset(err.code);
      else this.send(rstStreamFrame(err.streamId, err.code));
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== FrameType.SETTINGS) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'the first frame must be SETTINGS');
    if (this.block && type !== FrameType.CONTINUATION) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a header block was cut by another frame');
    switch (type) {
      case FrameType.DATA:
        this.onData(flags, streamId, payload);
        return;
      case FrameType.HEADERS:
        this.onHeaders(flags, streamId, payload);
        return;
      case FrameType.CONTINUATION:
        this.onContinuation(flags, streamId, payload);
        return;
      case FrameType.PRIORITY:
        if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) throw new StreamError(streamId, ErrorCode.FRAME_SIZE_ERROR, 'PRIORITY must be 5 bytes');
        return;
      case FrameType.RST_STREAM:
        this.onRstStream(streamId, payload);
        return;
      case FrameType.SETTINGS:
        this.onSettings(flags, streamId, payload);
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'a client cannot push');
      case FrameType.PING:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'PING must be 8 bytes');
        if (!(flags & Flag.ACK)) this.send(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'GOAWAY on a stream');
        return;
      case FrameType.WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  /** The payload without its padding; throws when the padding is longer than the frame. */
  private unpad(flags: number, payload: Buffer, skip = 0): Buffer {
    if (!(flags & Flag.PADDED)) return skip ? checkedSlice(payload, skip, payload.length) : payload;
    if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'padded frame without its pad length');
    const pad = payload[0] as number;
    return checkedSlice(payload, 1 + skip, payload.length - pad);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'DATA on stream 0');
    const length = payload.length;
    this.recvAvailable -= length;
    if (this.recvAvailable < 0) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'the client sent past the connection window');
    const data = this.unpad(flags, payload);
    const stream = this.streams.get(streamId);
    if (!stream) {
      this.consumed(undefined, length);
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      return; // a stream we closed or reset: what was already on its way is dropped
    }
    if (stream.remoteEnded) {
      this.consumed(undefined, length);
      throw new StreamError(streamId, ErrorCode.STREAM_CLOSED, 'DATA after END_STREAM');
    }
    stream.recvAvailable -= length;
    if (stream.recvAvailable < 0) {
      this.consumed(undefined, length);
      throw new StreamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, 'the client sent past the stream window');
    }
    // The padding is consumed now; the data when the application takes it.
    if (length > data.length) this.consumed(stream, length - data.length);
    if (data.length > 0) stream.deliver(data);
    if (flags & Flag.END_STREAM) stream.remoteEnd();
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || streamId % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${streamId}`);
    const fragment = this.unpad(flags, payload, flags & Flag.PRIORITY ? 5 : 0);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) {
      this.onHeaderBlock(streamId, endStream, fragment);
      return;
    }
    this.block = { streamId, endStream, chunks: [Buffer.from(fragment)], size: fragment.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.block;
    if (!block || block.streamId !== streamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'CONTINUATION without its HEADERS');
    block.chunks.push(Buffer.from(payload));
    block.size += payload.length;
    // An encoded block is never much larger than the list it carries.
    if (block.size > 2 * this.opts.maxHeaderListSize + 1024) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `header block over ${this.opts.maxHeaderListSize} bytes`);
    }
    if (!(flags & Flag.END_HEADERS)) return;
    this.block = undefined;
    this.onHeaderBlock(streamId, block.endStream, Buffer.concat(block.chunks, block.size));
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let list: Array<[string, string]>;
    try {
      list = this.decoder.decode(block);
    } catch (err) {
      if (err instanceof HeaderListTooLargeError && !this.streams.has(streamId) && streamId > this.lastStreamId) {
        // The decoder kept its table in step: refuse the stream alone (grpc-go reads ENHANCE_YOUR_CALM as ResourceExhausted).
        this.lastStreamId = streamId;
        throw new StreamError(streamId, ErrorCode.ENHANCE_YOUR_CALM, err.message);
      }
      if (err instanceof HpackError) throw new ConnectionError(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const existing = this.streams.get(streamId);
    if (existing) {
      // Trailers from the client: gRPC clients send none, but they must end the stream.
      if (!endStream) throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, 'trailers without END_STREAM');
      if (existing.remoteEnded) throw new StreamError(streamId, ErrorCode.STREAM_CLOSED, 'HEADERS after END_STREAM');
      existing.remoteEnd();
      return;
    }
    if (streamId <= this.lastStreamId) throw new ConnectionError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${streamId}`);
    this.lastStreamId = streamId;
    if (this.goingAway) {
      this.send(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    if (this.streams.size >= this.opts.maxConcurrentStreams) {
      this.send(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const headers = requestHeaders(streamId, list);
    const stream = new H2Stream(this, streamId, headers, this.opts.streamWindow);
    this.streams.set(streamId, stream);
    if (endStream) stream.remoteEnd();
    this.opts.onStream(stream);
  }

  private onRstStream(streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'RST_STREAM must be 4 bytes');
    if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
    this.streams.get(streamId)?.drop();
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'SETTINGS not a multiple of 6 bytes');
    this.settingsSeen = true;
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'a stream window over 2^31-1');
        }
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_ALLOWED_FRAME_SIZE) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} out of range`);
        }
        this.peerMaxFrameSize = value;
      } else if (id === Setting.ENABLE_PUSH && value > 1) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH must be 0 or 1');
      }
      // HEADER_TABLE_SIZE: our encoder keeps no dynamic table. The others do not bind a server.
    }
    this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
    this.pumpBlocked();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, 'WINDOW_UPDATE must be 4 bytes');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, 'connection window over 2^31-1');
      this.pumpBlocked();
      return;
    }
    const stream = this.streams.get(streamId);
    if (!stream) {
      if (streamId > this.lastStreamId) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
      return;
    }
    if (increment === 0) throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) throw new StreamError(streamId, ErrorCode.FLOW_CONTROL_ERROR, 'stream window over 2^31-1');
    if (stream.outQueue.length > 0) this.pump(stream);
  }

  // ---- ending

  private connectionError(err: ConnectionError): void {
    this.opts.onError?.(err);
    this.send(goawayFrame(this.lastStreamId, err.code, err.message));
    this.flush();
    this.socket.end();
    this.terminate();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private fail(err: Error): void {
    this.opts.onError?.(err);
    this.socket.destroy();
    this.terminate();
  }

  /** The connection is gone: every open stream closes as if reset. */
  private terminate(): void {
    if (this.ended) return;
    this.ended = true;
    this.out = [];
    this.blocked.clear();
    for (const stream of [...this.streams.values()]) stream.drop();
    this.streams.clear();
    for (const fn of this.closeListeners.splice(0)) fn();
  }
}

function checkedSlice(payload: Buffer, from: number, to: number): Buffer {
  if (to < from) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, 'padding longer than the frame');
  return payload.subarray(from, to);
}

/** The length in the frame header at `at`; a frame over the size we allow is a connection error. */
function frameLength(buf: Buffer, at: number): number {
  const length = (buf[at] as number) * 65536 + (buf[at + 1] as number) * 256 + (buf[at + 2] as number);
  if (length > DEFAULT_MAX_FRAME_SIZE) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes is over ${DEFAULT_MAX_FRAME_SIZE}`);
  return length;
}

/**
 * A request's headers by name. A repeated name's values are joined with ", "
 * (as node:http2 does); pseudo-headers other than the request ones, or a
 * request without :method and :path, are a malformed request.
 */
function requestHeaders(streamId: number, list: Array<[string, string]>): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  let regular = false;
  for (const [name, value] of list) {
    if (name.charCodeAt(0) === 0x3a) {
      if (regular || (name !== ':method' && name !== ':path' && name !== ':scheme' && name !== ':authority') || name in headers) {
        throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, `malformed pseudo-header ${name}`);
      }
    } else {
      regular = true;
      if (name === 'connection') throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, 'connection-specific header');
    }
    const before = headers[name];
    headers[name] = before === undefined ? value : `${before}, ${value}`;
  }
  if (headers[':method'] === undefined || headers[':path'] === undefined) {
    throw new StreamError(streamId, ErrorCode.PROTOCOL_ERROR, 'request without :method or :path');
  }
  return headers;
}

/** Thrown to a reader when the stream closes before the client ended its side. */
export class StreamResetError extends Error {
  constructor() {
    super('the stream was reset');
    this.name = 'StreamResetError';
  }
}

/**
 * One request stream. Its input is read with `read()`; its output is
 * `respond`, `write` and `end` (trailers), in that order.
 */
export class H2Stream {
  /** Window the client has left on this stream, and what was consumed but not yet given back. */
  recvAvailable: number;
  recvConsumed = 0;
  sendWindow: number;
  readonly outQueue: Buffer[] = [];
  remoteEnded = false;
  private localEnded = false;
  closed = false;
  private inbox: Buffer[] = [];
  private wake: (() => void) | undefined;
  private trailers: HeaderList | undefined;
  private closeListener: (() => void) | undefined;
  private writableWaiters: Array<() => void> = [];

  constructor(
    private readonly session: H2Session,
    readonly id: number,
    readonly headers: Record<string, string>,
    window: number,
  ) {
    this.recvAvailable = window;
    this.sendWindow = session.peerInitialWindow;
  }

  /** Called once when the stream closes: both sides ended, reset by either side, or the connection gone. */
  onClose(fn: () => void): void {
    this.closeListener = fn;
  }

  // ---- input

  deliver(data: Buffer): void {
    this.inbox.push(data);
    this.wakeReader();
  }

  remoteEnd(): void {
    this.remoteEnded = true;
    this.wakeReader();
    if (this.localEnded) this.drop();
  }

  private wakeReader(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /**
   * The request's DATA, chunk by chunk, as it comes; throws StreamResetError
   * when the stream closes before the client ends its side. A chunk's window
   * is given back as the reader takes it, so a reader that stops taking
   * stops the client.
   */
  async *read(): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = this.inbox.shift();
      if (chunk) {
        this.session.consumed(this, chunk.length);
        yield chunk;
        continue;
      }
      if (this.remoteEnded) return;
      if (this.closed) throw new StreamResetError();
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  // ---- output

  /** Response headers; with `endStream`, a trailers-only response. */
  respond(headers: HeaderList, endStream = false): void {
    if (this.closed || this.localEnded) return;
    this.session.sendHeaders(this.id, headers, endStream);
    if (endStream) this.localEnd();
  }

  /** Queue DATA; false when the caller should wait (`writable()`) before writing more. */
  write(data: Buffer): boolean {
    if (this.closed || this.localEnded) return true;
    this.outQueue.push(data);
    return this.session.pump(this) && !this.session.socketBlocked;
  }

  /** Resolves once the stream's queued DATA is out and the socket takes more, or the stream closed. */
  writable(): Promise<void> {
    if (this.closed || (this.outQueue.length === 0 && !this.session.socketBlocked)) return Promise.resolve();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  notifyWritable(): void {
    if (this.outQueue.length > 0 && !this.closed) return;
    for (const fn of this.writableWaiters.splice(0)) fn();
  }

  /** Trailers with END_STREAM, after any DATA still queued. */
  end(trailers: HeaderList): void {
    if (this.closed || this.localEnded || this.trailers) return;
    this.trailers = trailers;
    if (this.outQueue.length === 0) this.sentAll();
  }

  /** Called by the session when the queue is empty: the trailers, if they are waiting. */
  sentAll(): void {
    const trailers = this.trailers;
    if (!trailers || this.localEnded) return;
    this.trailers = undefined;
    this.session.sendHeaders(this.id, trailers, true);
    this.localEnd();
  }

  reset(code: number = ErrorCode.CANCEL): void {
    if (this.closed) return;
    this.session.resetStream(this, code);
    this.closedNow();
  }

  /**
   * The answer is complete. A client still sending is asked to stop with
   * RST_STREAM NO_ERROR (RFC 9113 §8.1), as an answer before the whole
   * request (a refused one) allows.
   */
  private localEnd(): void {
    this.localEnded = true;
    if (this.remoteEnded) this.drop();
    else this.reset(ErrorCode.NO_ERROR);
  }

  /** Close without sending anything: both sides ended, the client reset the stream, or the connection went away. */
  drop(): void {
    if (this.closed) return;
    this.session.forget(this);
    this.closedNow();
  }

  private closedNow(): void {
    if (this.closed) return;
    this.closed = true;
    // Unread DATA still holds connection window: give it back.
    let unread = 0;
    for (const chunk of this.inbox) unread += chunk.length;
    this.inbox = [];
    this.session.consumed(undefined, unread);
    this.outQueue.length = 0;
    this.wakeReader();
    for (const fn of this.writableWaiters.splice(0)) fn();
    const listener = this.closeListener;
    this.closeListener = undefined;
    listener?.();
  }
}
