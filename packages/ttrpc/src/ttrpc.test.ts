import { bindService, GrpcConnection, GrpcServer, protoRoot } from '@berth/api';
import {
  AlreadyExistsError,
  CanceledError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  UnavailableError,
  UnknownError,
} from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeFrame, type Frame, FrameDecoder, MESSAGE_LENGTH_MAX, MessageType } from './frame-decoder.js';
import { decodeResponse, encodeRequest, encodeResponse, type TtrpcRequest } from './messages.js';
import { TtrpcClient, ttrpcService } from './ttrpc-client.js';
import { type TtrpcRequestContext, TtrpcServer } from './ttrpc-server.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const TASK = 'containerd.task.v2.Task';
const EVENTS = 'containerd.services.events.ttrpc.v1.Events';

/** A Task implementation: every method answers {} unless overridden. */
function taskImplementation(overrides: Record<string, (req: never, ctx: TtrpcRequestContext) => Promise<unknown>>) {
  const methods = protoRoot().lookupService(TASK).methodsArray;
  const impl: Record<string, unknown> = Object.fromEntries(
    methods.map((m) => [m.name.charAt(0).toLowerCase() + m.name.slice(1), async () => ({})]),
  );
  return Object.assign(impl, overrides);
}

/** A bare socket speaking frames, to send what the client never would. */
class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.decoder.push(chunk));
      this.waiter?.();
    });
  }
  static connect(path: string): RawPeer {
    return new RawPeer(createConnection(path));
  }
  send(streamId: number, message: Uint8Array, type: number = MessageType.REQUEST): void {
    this.socket.write(encodeFrame(streamId, type, message));
  }
  async next(): Promise<Frame> {
    while (this.frames.length === 0) await new Promise<void>((resolve) => (this.waiter = resolve));
    return this.frames.shift() as Frame;
  }
  async response(): Promise<{ streamId: number; code: number; message: string; payload: Uint8Array }> {
    const frame = await this.next();
    assert.equal(frame.kind, 'message');
    assert.equal(frame.type, MessageType.RESPONSE);
    const res = decodeResponse((frame as Frame & { payload: Buffer }).payload);
    return { streamId: frame.streamId, code: res.status?.code ?? 0, message: res.status?.message ?? '', payload: res.payload };
  }
}

/** Polls: what a server does after the client gave up happens a little later. */
async function eventually(what: string, cond: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 10_000; !cond(); await sleep(5)) {
    if (Date.now() > deadline) assert.fail(what);
  }
}

const request = (over: Partial<TtrpcRequest>): Buffer =>
  encodeRequest({ service: TASK, method: 'Connect', payload: new Uint8Array(), timeoutNano: 0, metadata: [], ...over });

describe('TtrpcServer and TtrpcClient', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-'));
  const socket = join(dir, 'ttrpc.sock');
  const server = new TtrpcServer({ log: silent });
  const seen: TtrpcRequestContext[] = [];
  const aborted: unknown[] = [];
  let hanging = 0;
  let client: TtrpcClient;

  const waitForAbort = (ctx: TtrpcRequestContext) =>
    new Promise<never>((_, reject) => {
      hanging++;
      ctx.signal?.addEventListener('abort', () => {
        aborted.push(ctx.signal?.reason);
        reject(ctx.signal?.reason);
      });
    });

  before(async () => {
    server.register(
      protoRoot(),
      TASK,
      taskImplementation({
        connect: async (req: { id: string }, ctx) => {
          seen.push(ctx);
          return { shimPid: 42, taskPid: Number(req.id) || 0, version: ctx.namespace ?? '' };
        },
        state: async (req: { id: string }, ctx) => {
          const errors: Record<string, Error> = {
            missing: new NotFoundError('container "missing": not found'),
            dup: new AlreadyExistsError('dup exists'),
            busy: new FailedPreconditionError('still running'),
            later: new NotImplementedError('not yet'),
            down: new UnavailableError('try again'),
            plain: new Error('boom'),
          };
          if (errors[req.id]) throw errors[req.id];
          if (req.id === 'huge') return { id: 'x'.repeat(MESSAGE_LENGTH_MAX + 1) };
          if (req.id === 'hang') return waitForAbort(ctx);
          return { id: req.id };
        },
        pids: async (req: { id: string }) => {
          // Answers out of order: later calls often finish first.
          await sleep(Math.floor(Math.random() * 20));
          return { processes: [{ pid: Number(req.id) }] };
        },
      }),
    );
    await server.listen(socket);
    client = new TtrpcClient(socket);
  });

  after(async () => {
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the socket is mode 0600', () => {
    assert.equal(statSync(socket).mode & 0o777, 0o600);
  });

  test('a typed unary call round-trips, by proto name or lowerCamel', async () => {
    const task = ttrpcService(client, protoRoot(), TASK);
    assert.deepEqual(await task.unary('Connect', { id: '7' }), { shimPid: 42, taskPid: 7, version: '' });
    assert.deepEqual(await task.unary('state', { id: 'abc' }), {
      id: 'abc',
      bundle: '',
      pid: 0,
      status: 0,
      stdin: '',
      stdout: '',
      stderr: '',
      terminal: false,
      exitStatus: 0,
      exitedAt: null,
      execId: '',
    });
    await assert.rejects(task.unary('Nope', {}), /has no method Nope/);
  });

  test('the namespace comes from containerd-namespace-ttrpc, else containerd-namespace, and is validated', async () => {
    const task = ttrpcService(client, protoRoot(), TASK);
    const ns = async (opts: object) => (await task.unary<{ version: string }>('Connect', {}, opts)).version;
    assert.equal(await ns({ metadata: { 'containerd-namespace-ttrpc': 'ttrpc-ns' } }), 'ttrpc-ns');
    assert.equal(await ns({ metadata: { 'containerd-namespace': 'grpc-ns' } }), 'grpc-ns');
    assert.equal(await ns({ metadata: { 'containerd-namespace': 'grpc-ns', 'containerd-namespace-ttrpc': 'wins' } }), 'wins');
    assert.equal(await ns({ namespace: 'short' }), 'short');
    assert.equal(await ns({}), '');
    await assert.rejects(ns({ namespace: 'bad/ns' }), InvalidArgumentError);
    await task.unary('Connect', {}, { metadata: { trace: ['a', 'b'], one: 'x' } });
    const last = seen.at(-1) as TtrpcRequestContext;
    assert.deepEqual(last.metadata.get('trace'), ['a', 'b']);
    assert.deepEqual(last.metadata.get('one'), ['x']);
  });

  test('berth errors cross as their ttrpc codes and come back as berth errors', async () => {
    const task = ttrpcService(client, protoRoot(), TASK);
    const cases: [string, new (message: string) => Error, RegExp][] = [
      ['missing', NotFoundError, /container "missing": not found/],
      ['dup', AlreadyExistsError, /dup exists/],
      ['busy', FailedPreconditionError, /still running/],
      ['later', NotImplementedError, /not yet/],
      ['down', UnavailableError, /try again/],
      ['plain', UnknownError, /boom/],
    ];
    for (const [id, kind, message] of cases) {
      await assert.rejects(task.unary('State', { id }), (err: Error) => err instanceof kind && message.test(err.message));
    }
  });

  test('an unknown service or method is UNIMPLEMENTED', async () => {
    await assert.rejects(client.call('no.such.Service', 'Get', new Uint8Array()), (err: Error) => {
      return err instanceof NotImplementedError && err.message === 'service no.such.Service';
    });
    await assert.rejects(client.call(TASK, 'Teleport', new Uint8Array()), (err: Error) => {
      return err instanceof NotImplementedError && err.message === 'method Teleport';
    });
  });

  test('a payload that is not the method request type is INVALID_ARGUMENT', async () => {
    await assert.rejects(client.call(TASK, 'State', Buffer.from([0x0a, 0x05, 0x61])), (err: Error) => {
      return err instanceof InvalidArgumentError && /malformed containerd\.task\.v2\.StateRequest/.test(err.message);
    });
  });

  test('100 concurrent calls on one connection each get their own answer', async () => {
    const task = ttrpcService(client, protoRoot(), TASK);
    const ids = Array.from({ length: 100 }, (_, i) => i + 1);
    const answers = await Promise.all(ids.map((id) => task.unary<{ processes: { pid: number }[] }>('Pids', { id: String(id) })));
    assert.deepEqual(
      answers.map((a) => a.processes[0].pid),
      ids,
    );
  });

  test('a client deadline fails the call and reaches the handler as timeout_nano', async () => {
    const task = ttrpcService(client, protoRoot(), TASK);
    const started = Date.now();
    await assert.rejects(task.unary('State', { id: 'hang' }, { timeoutMs: 100 }), DeadlineExceededError);
    assert.ok(Date.now() - started >= 95);
    await eventually('the handler saw its deadline', () => aborted.some((reason) => reason instanceof DeadlineExceededError));
    // The connection is still good.
    assert.equal((await task.unary<{ shimPid: number }>('Connect', {})).shimPid, 42);
  });

  test('the server answers DEADLINE_EXCEEDED itself when timeout_nano runs out, or has already', async () => {
    const peer = RawPeer.connect(socket);
    const state = protoRoot().lookupType('containerd.task.v2.StateRequest');
    const payload = state.encode({ id: 'hang' }).finish();
    peer.send(1, request({ method: 'State', payload, timeoutNano: 50e6 }));
    const late = await peer.response();
    assert.deepEqual([late.streamId, late.code], [1, 4]);
    peer.send(3, request({ method: 'State', payload, timeoutNano: -1 }));
    const expired = await peer.response();
    assert.deepEqual([expired.streamId, expired.code], [3, 4]);
    peer.socket.destroy();
  });

  test('an even stream id, a malformed request and an oversized frame are refused on their stream; the connection lives on', async () => {
    const peer = RawPeer.connect(socket);
    peer.send(2, request({}));
    const even = await peer.response();
    assert.deepEqual([even.streamId, even.code, even.message], [2, 3, 'StreamID must be odd for client initiated streams']);

    peer.send(5, Buffer.from([0x0a, 0xff]));
    const malformed = await peer.response();
    assert.equal(malformed.streamId, 5);
    assert.equal(malformed.code, 3);
    assert.match(malformed.message, /^unmarshal request error/);

    // Several frames in one write, the oversized one among them.
    const oversize = Buffer.alloc(10 + MESSAGE_LENGTH_MAX + 1);
    oversize.writeUInt32BE(MESSAGE_LENGTH_MAX + 1, 0);
    oversize.writeUInt32BE(7, 4);
    oversize[8] = MessageType.REQUEST;
    peer.socket.write(Buffer.concat([oversize, encodeFrame(9, MessageType.REQUEST, request({}))]));
    const big = await peer.response();
    assert.deepEqual([big.streamId, big.code], [7, 8]);
    assert.match(big.message, /exceed maximum message size of 4194304/);
    const next = await peer.response();
    assert.deepEqual([next.streamId, next.code], [9, 0]);

    // A response frame sent to a server is ignored, as ttrpc does.
    peer.send(11, encodeResponse({ payload: new Uint8Array() }), MessageType.RESPONSE);
    peer.send(13, request({}));
    assert.equal((await peer.response()).streamId, 13);
    peer.socket.destroy();
  });

  test('oversized requests fail before sending; oversized responses become RESOURCE_EXHAUSTED', async () => {
    await assert.rejects(client.call(EVENTS, 'Forward', Buffer.alloc(MESSAGE_LENGTH_MAX)), (err: Error) => {
      return err instanceof UnknownError && /exceeds maximum message size of 4194304/.test(err.message);
    });
    const task = ttrpcService(client, protoRoot(), TASK);
    await assert.rejects(task.unary('State', { id: 'huge' }), (err: Error) => {
      return err instanceof UnknownError && /response length \d+ exceeds maximum message size/.test(err.message);
    });
    assert.equal((await task.unary<{ id: string }>('State', { id: 'fine' })).id, 'fine');
  });

  test('an abort signal cancels the call', async () => {
    const abort = new AbortController();
    const call = ttrpcService(client, protoRoot(), TASK).unary('State', { id: 'hang' }, { signal: abort.signal });
    abort.abort();
    await assert.rejects(call, CanceledError);
    await assert.rejects(client.call(TASK, 'Connect', new Uint8Array(), { signal: abort.signal }), CanceledError);
  });

  test('closing the client fails pending calls with UNAVAILABLE and aborts the handlers', async () => {
    const own = new TtrpcClient(socket);
    const task = ttrpcService(own, protoRoot(), TASK);
    await task.unary('Connect', {});
    const before = aborted.length;
    const started = hanging;
    const pending = task.unary('State', { id: 'hang' });
    await eventually('the handler runs', () => hanging === started + 1);
    own.close();
    await assert.rejects(pending, UnavailableError);
    await assert.rejects(task.unary('Connect', {}), UnavailableError);
    await eventually('the server aborted the handler of the closed connection', () => aborted.length === before + 1);
  });

  test('a socket nobody serves gives UNAVAILABLE', async () => {
    const nowhere = new TtrpcClient(`unix://${join(dir, 'nothing.sock')}`);
    await assert.rejects(nowhere.call(TASK, 'Connect', new Uint8Array()), (err: Error) => {
      return err instanceof UnavailableError && /nothing\.sock closed: connect ENOENT/.test(err.message);
    });
  });

  test('register refuses a missing handler and a second registration', () => {
    const other = new TtrpcServer({ log: silent });
    assert.throws(() => other.register(protoRoot(), TASK, { connect: async () => ({}) }), /no handler for State/);
    other.register(protoRoot(), EVENTS, { forward: async () => ({}) });
    assert.throws(() => other.register(protoRoot(), EVENTS, { forward: async () => ({}) }), /already registered/);
  });

  test('listen replaces a stale socket file but not a live server', async () => {
    const stale = join(dir, 'stale.sock');
    writeFileSync(stale, '');
    const other = new TtrpcServer({ log: silent });
    await other.listen(stale);
    await assert.rejects(new TtrpcServer({ log: silent }).listen(stale), /another server answers there/);
    await other.close();
    assert.throws(() => statSync(stale), /ENOENT/, 'close removes the socket');
  });
});

describe('TtrpcClient against a scripted server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-raw-'));
  const socket = join(dir, 'raw.sock');
  const streamIds: number[] = [];
  const raw = createServer((conn) => {
    const peer = new RawPeer(conn);
    void (async () => {
      for (;;) {
        const frame = await peer.next();
        streamIds.push(frame.streamId);
        const ok = encodeResponse({ payload: Buffer.from(`#${frame.streamId}`) });
        if (streamIds.length === 2) {
          // Oversized answer, then a stray one for a stream nobody opened, then the real one's neighbour.
          const oversize = Buffer.alloc(10);
          oversize.writeUInt32BE(MESSAGE_LENGTH_MAX + 1, 0);
          oversize.writeUInt32BE(frame.streamId, 4);
          oversize[8] = MessageType.RESPONSE;
          conn.write(oversize);
          for (let sent = 0; sent <= MESSAGE_LENGTH_MAX; sent += 1 << 20) conn.write(Buffer.alloc(Math.min(1 << 20, MESSAGE_LENGTH_MAX + 1 - sent)));
          conn.write(encodeFrame(999, MessageType.RESPONSE, ok));
        } else if (streamIds.length === 4) {
          conn.destroy();
          return;
        } else {
          // Split the answer mid-header to exercise partial reads.
          const bytes = encodeFrame(frame.streamId, MessageType.RESPONSE, ok);
          conn.write(bytes.subarray(0, 3));
          await sleep(5);
          conn.write(bytes.subarray(3));
        }
      }
    })().catch(() => {});
  });

  before(() => new Promise<void>((resolve) => raw.listen(socket, resolve)));
  after(async () => {
    await new Promise((resolve) => raw.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  test('stream ids are odd and rise by 2; oversized answers fail one call; the peer closing fails the rest', async () => {
    const client = new TtrpcClient(socket);
    assert.equal((await client.call('s', 'm', new Uint8Array())).toString(), '#1');
    await assert.rejects(client.call('s', 'm', new Uint8Array()), /message length 4194305 exceeds maximum message size/);
    assert.equal((await client.call('s', 'm', new Uint8Array())).toString(), '#5');
    await assert.rejects(client.call('s', 'm', new Uint8Array()), UnavailableError);
    assert.deepEqual(streamIds, [1, 3, 5, 7]);
  });
});

describe('one implementation on gRPC and ttrpc', () => {
  test('the same Events Forward handler serves both transports', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-both-'));
    const forwarded: string[] = [];
    const implementation = {
      forward: async (req: { envelope: { topic: string } }, ctx: { namespace?: string }) => {
        forwarded.push(`${req.envelope.topic}@${ctx.namespace}`);
        return {};
      },
    };
    const grpcServer = new GrpcServer({ log: silent });
    const ttrpcServer = new TtrpcServer({ log: silent });
    let client: TtrpcClient | undefined;
    let conn: GrpcConnection | undefined;
    try {
      bindService(grpcServer, protoRoot(), { service: EVENTS, implementation }, silent);
      ttrpcServer.register(protoRoot(), EVENTS, implementation);
      await ttrpcServer.listen(join(dir, 'ttrpc.sock'));
      client = new TtrpcClient(join(dir, 'ttrpc.sock'));
      await grpcServer.listen(join(dir, 'grpc.sock'));
      conn = new GrpcConnection(join(dir, 'grpc.sock'));
      await conn.service(EVENTS).unary('Forward', { envelope: { topic: '/over/grpc' } }, { namespace: 'g' });
      await ttrpcService(client, protoRoot(), EVENTS).unary('forward', { envelope: { topic: '/over/ttrpc' } }, { namespace: 't' });
      assert.deepEqual(forwarded, ['/over/grpc@g', '/over/ttrpc@t']);
    } finally {
      conn?.close();
      client?.close();
      await ttrpcServer.close();
      await grpcServer.close(0);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
