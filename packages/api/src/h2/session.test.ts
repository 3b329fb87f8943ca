import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ErrorCode, Flag, FrameType, frame, PREFACE, settingsFrame } from './frames.js';
import { HpackDecoder, HpackEncoder } from './hpack.js';
import { H2Session, type H2Stream } from './session.js';

/** What the test server does with each stream, by :path. */
type Handler = (stream: H2Stream) => void | Promise<void>;

const handlers: Record<string, Handler> = {
  /** Reads the whole request, answers its SHA-256 and length. */
  '/hash': async (stream) => {
    const hash = createHash('sha256');
    let n = 0;
    for await (const chunk of stream.read()) {
      hash.update(chunk);
      n += chunk.length;
    }
    stream.respond([[':status', '200']]);
    stream.write(Buffer.from(`${hash.digest('hex')} ${n}`));
    stream.end([['x-done', 'yes']]);
  },
  /** Answers 3 MiB at once, more than any default window. */
  '/big': (stream) => {
    stream.respond([[':status', '200']]);
    stream.write(Buffer.alloc(3 * 1024 * 1024 + 5, 7));
    stream.end([['x-done', 'yes']]);
  },
  /** Never answers; records its close. */
  '/hang': (stream) => {
    stream.onClose(() => {
      hangClosed = true;
    });
  },
};
let hangClosed = false;

describe('H2Session', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-h2-'));
  const path = join(dir, 'h2.sock');
  const sessions = new Set<H2Session>();
  let server: Server;

  before(async () => {
    server = createServer((socket) => {
      const session = new H2Session(socket, {
        streamWindow: 4 * 1024 * 1024,
        connectionWindow: 16 * 1024 * 1024,
        maxConcurrentStreams: 2,
        maxHeaderListSize: 8192,
        onStream: (stream) => void handlers[stream.headers[':path'] ?? '']?.(stream),
      });
      sessions.add(session);
      session.onClose(() => sessions.delete(session));
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
  });

  after(async () => {
    for (const session of sessions) session.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function client(settings = {}): ClientHttp2Session {
    return http2Connect('http://localhost', { createConnection: () => netConnect(path), settings });
  }

  function request(c: ClientHttp2Session, reqPath: string, body?: Buffer) {
    return new Promise<{ headers: Record<string, unknown>; trailers: Record<string, unknown>; data: Buffer }>((resolve, reject) => {
      const req = c.request({ ':method': 'POST', ':path': reqPath });
      let headers: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      const data: Buffer[] = [];
      req.on('response', (h) => {
        headers = h;
      });
      req.on('trailers', (t) => {
        trailers = t;
      });
      req.on('data', (chunk) => data.push(chunk));
      req.on('end', () => resolve({ headers, trailers, data: Buffer.concat(data) }));
      req.on('error', reject);
      req.end(body);
    });
  }

  test('a request body larger than every window arrives whole, and its answer with trailers', async () => {
    const c = client();
    try {
      const body = Buffer.alloc(9 * 1024 * 1024 + 3);
      for (let i = 0; i < body.length; i += 4096) body[i] = i & 0xff;
      const res = await request(c, '/hash', body);
      assert.equal(res.headers[':status'], 200);
      assert.equal(res.data.toString(), `${createHash('sha256').update(body).digest('hex')} ${body.length}`);
      assert.equal(res.trailers['x-done'], 'yes');
    } finally {
      c.close();
    }
  });

  test('an answer larger than the client window waits for its WINDOW_UPDATEs', async () => {
    const c = client({ initialWindowSize: 16384 });
    try {
      const res = await request(c, '/big');
      assert.equal(res.data.length, 3 * 1024 * 1024 + 5);
      assert.ok(res.data.every((b) => b === 7));
      assert.equal(res.trailers['x-done'], 'yes');
    } finally {
      c.close();
    }
  });

  test('a client reset closes the stream on the server', async () => {
    const c = client();
    try {
      hangClosed = false;
      const req = c.request({ ':method': 'POST', ':path': '/hang' });
      req.on('error', () => {});
      await new Promise((resolve) => setTimeout(resolve, 50));
      req.close();
      for (let i = 0; i < 100 && !hangClosed; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal(hangClosed, true);
    } finally {
      c.close();
    }
  });

  /** A raw connection: the preface and empty SETTINGS sent, frames read back one by one. */
  async function raw() {
    const socket = netConnect(path);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.concat([PREFACE, settingsFrame([])]));
    const reader = frameReader(socket);
    return { socket, ...reader };
  }

  test('the settings, then an answer whose headers, message and trailers leave in one write', async () => {
    const { socket, next, reads } = await raw();
    try {
      const settings = await next();
      assert.equal(settings.type, FrameType.SETTINGS);
      // The initial window (4 MiB) is in the settings; the connection's comes as a WINDOW_UPDATE.
      assert.ok(settings.payload.includes(Buffer.from([0, 4, 0, 0x40, 0, 0])));
      const update = await next();
      assert.equal(update.type, FrameType.WINDOW_UPDATE);
      assert.equal(update.payload.readUInt32BE(0), 16 * 1024 * 1024 - 65535);
      const block = new HpackEncoder().encode([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', '/hash'],
        [':authority', 'x'],
      ]);
      const readsBefore = reads();
      socket.write(
        Buffer.concat([
          frame(FrameType.HEADERS, Flag.END_HEADERS, 1, block),
          frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.from('abc')),
        ]),
      );
      const kinds: number[] = [];
      let trailers: Array<[string, string]> = [];
      const decoder = new HpackDecoder();
      for (;;) {
        const f = await next();
        if (f.streamId !== 1) continue;
        kinds.push(f.type);
        if (f.type === FrameType.HEADERS) {
          const list = decoder.decode(f.payload);
          if (f.flags & Flag.END_STREAM) {
            trailers = list;
            break;
          }
        }
      }
      assert.deepEqual(kinds, [FrameType.HEADERS, FrameType.DATA, FrameType.HEADERS]);
      assert.deepEqual(trailers, [['x-done', 'yes']]);
      // SETTINGS ACK, then the whole answer: one read each at most.
      assert.ok(reads() - readsBefore <= 2, `the answer took ${reads() - readsBefore} reads`);
    } finally {
      socket.destroy();
    }
  });

  test('PING is answered with the same payload', async () => {
    const { socket, next } = await raw();
    try {
      socket.write(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
      for (;;) {
        const f = await next();
        if (f.type !== FrameType.PING) continue;
        assert.equal(f.flags & Flag.ACK, Flag.ACK);
        assert.equal(f.payload.toString(), '12345678');
        break;
      }
    } finally {
      socket.destroy();
    }
  });

  test('streams over the limit are refused', async () => {
    const { socket, next } = await raw();
    try {
      const encoder = new HpackEncoder();
      const open = (id: number) =>
        frame(
          FrameType.HEADERS,
          Flag.END_HEADERS,
          id,
          encoder.encode([
            [':method', 'POST'],
            [':path', '/hang'],
          ]),
        );
      socket.write(Buffer.concat([open(1), open(3), open(5)]));
      for (;;) {
        const f = await next();
        if (f.type !== FrameType.RST_STREAM) continue;
        assert.equal(f.streamId, 5);
        assert.equal(f.payload.readUInt32BE(0), ErrorCode.REFUSED_STREAM);
        break;
      }
    } finally {
      socket.destroy();
    }
  });

  for (const [name, bytes, code] of [
    ['DATA on stream 0', frame(FrameType.DATA, 0, 0, Buffer.from('x')), ErrorCode.PROTOCOL_ERROR],
    ['a frame over the 16 KiB maximum', frame(FrameType.DATA, 0, 1, Buffer.alloc(16385)), ErrorCode.FRAME_SIZE_ERROR],
    ['a header block HPACK cannot decode', frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])), ErrorCode.COMPRESSION_ERROR],
    ['DATA on a stream never opened', frame(FrameType.DATA, 0, 7, Buffer.from('x')), ErrorCode.PROTOCOL_ERROR],
    ['a WINDOW_UPDATE of 0 on the connection', frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.alloc(4)), ErrorCode.PROTOCOL_ERROR],
  ] as const) {
    test(`${name} ends the connection with GOAWAY`, async () => {
      const { socket, next } = await raw();
      try {
        socket.write(bytes);
        for (;;) {
          const f = await next();
          if (f.type !== FrameType.GOAWAY) continue;
          assert.equal(f.payload.readUInt32BE(4), code);
          break;
        }
        await new Promise((resolve) => socket.once('close', resolve));
      } finally {
        socket.destroy();
      }
    });
  }

  test('a connection that does not start with the preface is closed', async () => {
    const socket = netConnect(path);
    try {
      socket.resume();
      socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((resolve) => socket.once('close', resolve));
    } finally {
      socket.destroy();
    }
  });

  const encoder = new HpackEncoder();
  const requestBlock = (path: string, extra: Array<[string, string]> = []) =>
    encoder.encode([[':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'x'], ...extra]);

  /** The frames of stream `id` up to the one that ends it (or a reset). */
  async function streamFrames(next: () => Promise<RawFrame>, id: number): Promise<RawFrame[]> {
    const out: RawFrame[] = [];
    for (;;) {
      const f = await next();
      if (f.streamId !== id) continue;
      out.push(f);
      if (f.type === FrameType.RST_STREAM || ((f.type === FrameType.HEADERS || f.type === FrameType.DATA) && f.flags & Flag.END_STREAM)) return out;
    }
  }

  test('a header block split over CONTINUATION, padded and with a priority, and padded DATA make one request', async () => {
    const { socket, next } = await raw();
    try {
      const block = requestBlock('/hash');
      const first = Buffer.concat([Buffer.from([3]), Buffer.alloc(5), block.subarray(0, 10), Buffer.alloc(3)]);
      const data = Buffer.concat([Buffer.from([2]), Buffer.from('abc'), Buffer.alloc(2)]);
      socket.write(
        Buffer.concat([
          frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, first),
          frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block.subarray(10)),
          frame(FrameType.DATA, Flag.PADDED | Flag.END_STREAM, 1, data),
        ]),
      );
      const frames = await streamFrames(next, 1);
      const body = frames.find((f) => f.type === FrameType.DATA)?.payload.toString();
      assert.equal(body, `${createHash('sha256').update('abc').digest('hex')} 3`);
    } finally {
      socket.destroy();
    }
  });

  test('a header list over the limit refuses its stream alone (ENHANCE_YOUR_CALM); the next stream is served', async () => {
    const { socket, next } = await raw();
    try {
      socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, requestBlock('/hash', [['x-big', 'y'.repeat(9000)]])));
      const refused = await streamFrames(next, 1);
      assert.equal(refused.at(-1)?.type, FrameType.RST_STREAM);
      assert.equal(refused.at(-1)?.payload.readUInt32BE(0), ErrorCode.ENHANCE_YOUR_CALM);
      socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, requestBlock('/hash')));
      const served = await streamFrames(next, 3);
      assert.equal(served.find((f) => f.type === FrameType.DATA)?.payload.toString(), `${createHash('sha256').digest('hex')} 0`);
    } finally {
      socket.destroy();
    }
  });

  test("DATA never exceeds the client's windows, and goes on when SETTINGS or WINDOW_UPDATE open them", async () => {
    const socket = netConnect(path);
    await new Promise((resolve) => socket.once('connect', resolve));
    const { next } = frameReader(socket);
    try {
      // A stream window of 1000 bytes from the start.
      socket.write(Buffer.concat([PREFACE, settingsFrame([[0x4, 1000]])]));
      socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, requestBlock('/big')));
      let received = 0;
      const take = async (limit: number) => {
        for (;;) {
          const f = await next();
          if (f.streamId === 1 && f.type === FrameType.DATA) received += f.payload.length;
          if (received >= limit) return;
        }
      };
      await take(1000);
      // Nothing more comes until the window opens (a PING round trip proves the server has had its chance).
      socket.write(frame(FrameType.PING, 0, 0, Buffer.from('flowctl!')));
      for (;;) {
        const f = await next();
        if (f.type === FrameType.DATA) received += f.payload.length;
        if (f.type === FrameType.PING) break;
      }
      assert.equal(received, 1000);
      // A larger initial window applies to the open stream (RFC 9113 §6.9.2); the connection's is 65535.
      socket.write(settingsFrame([[0x4, 70_000]]));
      await take(65_535);
      assert.equal(received, 65_535);
      socket.write(frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 0x10, 0])));
      await take(65_535 + 4096);
      assert.ok(received <= 70_000, `received ${received} bytes on a 70000-byte window`);
    } finally {
      socket.destroy();
    }
  });

  test('garbage after the preface closes that connection and nothing else', async () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let i = 0; i < 30; i++) {
      const junk = Buffer.alloc(9 + (random() % 200));
      for (let j = 0; j < junk.length; j++) junk[j] = random() & 0xff;
      junk[0] = 0; // a length the frame can hold, so the junk is parsed rather than refused for its size
      const socket = netConnect(path);
      socket.resume();
      const closed = new Promise((resolve) => socket.once('close', resolve));
      // Ended by the server on an error, or by its answer to our end when the junk happened to parse.
      socket.end(Buffer.concat([PREFACE, settingsFrame([]), junk]));
      await closed;
    }
    const c = client();
    try {
      const res = await request(c, '/hash', Buffer.from('ok'));
      assert.equal(res.data.toString(), `${createHash('sha256').update('ok').digest('hex')} 2`);
    } finally {
      c.close();
    }
  });

  test('close() sends GOAWAY and ends the connection once its streams are done', async () => {
    const { socket, next } = await raw();
    try {
      await next(); // SETTINGS
      for (const session of sessions) session.close();
      for (;;) {
        const f = await next();
        if (f.type === FrameType.GOAWAY) {
          assert.equal(f.payload.readUInt32BE(4), ErrorCode.NO_ERROR);
          break;
        }
      }
      await new Promise((resolve) => socket.once('close', resolve));
    } finally {
      socket.destroy();
    }
  });
});

interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** Frames as they arrive on `socket`, and how many reads brought them. */
function frameReader(socket: Socket) {
  let buf = Buffer.alloc(0);
  let reads = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  socket.on('data', (chunk) => {
    reads++;
    buf = Buffer.concat([buf, chunk]);
    wake?.();
  });
  socket.on('close', () => {
    ended = true;
    wake?.();
  });
  async function next(): Promise<RawFrame> {
    for (;;) {
      if (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length >= 9 + length) {
          const f = { type: buf[3] as number, flags: buf[4] as number, streamId: buf.readUInt32BE(5) & 0x7fffffff, payload: buf.subarray(9, 9 + length) };
          buf = buf.subarray(9 + length);
          return f;
        }
      }
      if (ended) throw new Error('the connection closed');
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  }
  return { next, reads: () => reads };
}
