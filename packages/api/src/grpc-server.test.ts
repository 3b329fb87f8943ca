import {
  AlreadyExistsError,
  FailedPreconditionError,
  NotFoundError,
  NotImplementedError,
  type RequestContext,
  UnavailableError,
} from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bidiStream } from './grpc-bidi.js';
import { GrpcConnection } from './grpc-client.js';
import { frameMessage } from './grpc-framing.js';
import { bindService, CONNECTION_WINDOW_BYTES, GrpcServer, STREAM_WINDOW_BYTES } from './grpc-server.js';
import { protoRoot } from './proto-root.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/** The server listening on `socket`, and a client connected to it. */
async function listen(server: GrpcServer, socket: string): Promise<GrpcConnection> {
  await server.listen(socket);
  return new GrpcConnection(socket);
}

/** After a suite: the client, the server and the suite's folder go. */
async function shut(conn: GrpcConnection, server: GrpcServer, dir: string): Promise<void> {
  conn.close();
  await server.close(0);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The binder and the generic client together, over a real unix socket:
 * berth errors become gRPC codes on the way out and berth errors again on
 * the way in; the request context carries the containerd headers.
 */
describe('bindService and GrpcConnection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-api-'));
  const socket = join(dir, 'api.sock');
  const server = new GrpcServer({ log: silent });
  const seen: RequestContext[] = [];
  // The Delete handler below: when it started, and the abort reason it saw.
  let deleteStarted!: () => void;
  const started = new Promise<void>((resolve) => {
    deleteStarted = resolve;
  });
  let cancelSeen!: (reason: unknown) => void;
  const cancelReason = new Promise<unknown>((resolve) => {
    cancelSeen = resolve;
  });
  let conn: GrpcConnection;

  before(async () => {
    bindService(
      server,
      protoRoot(),
      {
        service: 'containerd.services.namespaces.v1.Namespaces',
        implementation: {
          get: async (req: { name: string }, ctx: RequestContext) => {
            seen.push(ctx);
            const errors: Record<string, Error> = {
              missing: new NotFoundError('namespace "missing": not found'),
              dup: new AlreadyExistsError('dup exists'),
              busy: new FailedPreconditionError('still has images'),
              later: new NotImplementedError('not yet'),
              down: new UnavailableError('try again'),
              plain: new Error('boom'),
            };
            const err = errors[req.name];
            if (err) throw err;
            return { namespace: { name: req.name, labels: { seen: ctx.namespace ?? '' } } };
          },
          list: async (_req: unknown, ctx: RequestContext) => {
            seen.push(ctx);
            return { namespaces: [] };
          },
          create: async () => ({}),
          update: async () => ({}),
          // Answers only once the call is cancelled.
          delete: async (_req: unknown, ctx: RequestContext) => {
            const signal = ctx.signal;
            assert.ok(signal);
            deleteStarted();
            await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
            cancelSeen(signal.reason);
            return {};
          },
        },
      },
      silent,
    );
    bindService(
      server,
      protoRoot(),
      {
        service: 'containerd.services.events.v1.Events',
        implementation: {
          publish: async () => ({}),
          forward: async () => ({}),
          subscribe: async function* (req: { filters: string[] }) {
            for (const topic of req.filters) yield { topic, namespace: 'n' };
            throw new FailedPreconditionError('stream ends with an error');
          },
        },
      },
      silent,
    );
    conn = await listen(server, socket);
  });

  after(() => shut(conn, server, dir));

  test('decoded requests, encoded responses and the namespace header', async () => {
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    const res = await ns.unary('Get', { name: 'web' }, { namespace: 'team', lease: 'l1' });
    assert.deepEqual(res.namespace, { name: 'web', labels: { seen: 'team' } });
    assert.equal(seen.at(-1)?.namespace, 'team');
    assert.equal(seen.at(-1)?.lease, 'l1');
  });

  test('a handler that is still running sees its signal abort when the client cancels', async () => {
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    const abort = new AbortController();
    const call = ns.unary('Delete', { name: 'x' }, { signal: abort.signal });
    await started;
    abort.abort();
    await assert.rejects(call);
    const reason = await cancelReason;
    assert.equal((reason as Error).name, 'AbortError');
  });

  test('an answered call does not abort its signal when its stream closes', async () => {
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    await ns.unary('List', {}, { namespace: 'team' });
    const ctx = seen.at(-1);
    // grpc-js reports every closed stream as 'cancelled', on a later tick.
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(ctx?.signal instanceof AbortSignal);
    assert.equal(ctx.signal.aborted, false);
    // Only the headers the call carried are fields of the context.
    assert.deepEqual(Object.keys(ctx), ['namespace']);
  });

  test('each berth error kind round-trips through its gRPC code', async () => {
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    const cases: Array<[string, string]> = [
      ['missing', 'NotFoundError'],
      ['dup', 'AlreadyExistsError'],
      ['busy', 'FailedPreconditionError'],
      ['later', 'NotImplementedError'],
      ['down', 'UnavailableError'],
      ['plain', 'UnknownError'],
    ];
    for (const [name, errorName] of cases) {
      await assert.rejects(ns.unary('Get', { name }), (err: Error) => {
        assert.equal(err.name, errorName, name);
        return true;
      });
    }
    await assert.rejects(ns.unary('Get', { name: 'missing' }), { message: 'namespace "missing": not found' });
  });

  test('an invalid namespace header is refused before the handler runs', async () => {
    const before = seen.length;
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    await assert.rejects(ns.unary('Get', { name: 'x' }, { namespace: 'a/b' }), { name: 'InvalidArgumentError' });
    assert.equal(seen.length, before);
  });

  test('server streams deliver every message, then the error status', async () => {
    const events = conn.service('containerd.services.events.v1.Events');
    const got: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const env of events.serverStream<{ topic: string }>('Subscribe', { filters: ['/a', '/b'] })) got.push(env.topic);
      })(),
      { name: 'FailedPreconditionError', message: 'stream ends with an error' },
    );
    assert.deepEqual(got, ['/a', '/b']);
  });

  test('a service with a missing handler cannot be bound', () => {
    assert.throws(
      () =>
        bindService(
          new GrpcServer({ log: silent }),
          protoRoot(),
          { service: 'containerd.services.version.v1.Version', implementation: {} },
          silent,
        ),
      /no handler for Version/,
    );
    assert.throws(
      () => bindService(new GrpcServer({ log: silent }), protoRoot(), { service: 'no.such.Service', implementation: {} }, silent),
      /not defined/,
    );
  });

  test('a daemon that is not there is Unavailable naming the address', async () => {
    const missing = new GrpcConnection(join(dir, 'nobody.sock'));
    try {
      await assert.rejects(missing.service('containerd.services.version.v1.Version').unary('Version', {}, { timeout: 2000 }), (err: Error) => {
        assert.ok(['UnavailableError', 'DeadlineExceededError'].includes(err.name), err.name);
        assert.match(err.message, /nobody\.sock|deadline/i);
        return true;
      });
    } finally {
      missing.close();
    }
  });
});

/**
 * The protocol itself, as grpc-js's client and a bare HTTP/2 client see it:
 * statuses for what no handler answers, limits, deadlines, streams both
 * ways, flow control and shutdown.
 */
describe('GrpcServer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-grpc-'));
  const socket = join(dir, 'grpc.sock');
  const server = new GrpcServer({ log: silent, maxMessageBytes: 4096 });
  const VERSION = 'containerd.services.version.v1.Version';
  const CONTENT = 'containerd.services.content.v1.Content';
  let sawAbort!: () => void;
  const aborted = new Promise<void>((resolve) => {
    sawAbort = resolve;
  });
  let conn: GrpcConnection;

  before(async () => {
    bindService(server, protoRoot(), { service: VERSION, implementation: { version: async () => ({ version: 'v', revision: 'r' }) } }, silent);
    const never = async (_req: unknown, ctx: RequestContext) => {
      await new Promise((resolve) => ctx.signal?.addEventListener('abort', resolve, { once: true }));
      sawAbort();
      return {};
    };
    bindService(
      server,
      protoRoot(),
      {
        service: CONTENT,
        implementation: {
          info: never,
          update: async () => ({}),
          list: async function* () {},
          delete: async () => ({}),
          read: async function* (req: { size: number }) {
            for (let i = 0; i < req.size; i++) yield { offset: i * 1000, data: Buffer.alloc(1000, i) };
          },
          status: async () => ({}),
          listStatuses: async () => ({ statuses: [] }),
          // Echoes each request's offset and the bytes it carried.
          write: async (reqs: AsyncIterable<{ ref: string; offset: number; data: Uint8Array }>, _ctx: RequestContext, send: (res: object) => Promise<void>) => {
            for await (const req of reqs) await send({ action: 1, offset: req.offset + req.data.length, total: 0, digest: req.ref });
          },
          abort: async () => ({}),
        },
      },
      silent,
    );
    conn = await listen(server, socket);
  });

  after(() => shut(conn, server, dir));

  /** One call by hand: its response headers, trailers and data. */
  async function rawCall(path: string, body: Buffer, headers: Record<string, string> = {}) {
    const client = http2Connect('http://localhost', { createConnection: () => netConnect(socket) });
    try {
      return await new Promise<{ headers: Record<string, unknown>; trailers: Record<string, unknown>; data: Buffer }>((resolve, reject) => {
        const req = client.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
        let responseHeaders: Record<string, unknown> = {};
        let trailers: Record<string, unknown> = {};
        const data: Buffer[] = [];
        req.on('response', (h) => {
          responseHeaders = h;
        });
        req.on('trailers', (t) => {
          trailers = t;
        });
        req.on('data', (c) => data.push(c));
        req.on('end', () => resolve({ headers: responseHeaders, trailers, data: Buffer.concat(data) }));
        req.on('error', reject);
        req.end(body);
      });
    } finally {
      client.close();
    }
  }

  test('an unknown method or service is Unimplemented, naming it', async () => {
    const method = await rawCall(`/${VERSION}/Nope`, frameMessage(Buffer.alloc(0)));
    assert.equal(method.headers['grpc-status'], '12');
    assert.equal(method.headers['grpc-message'], `unknown method Nope for service ${VERSION}`);
    const service = await rawCall('/no.such.Service/Call', frameMessage(Buffer.alloc(0)));
    assert.equal(service.headers['grpc-status'], '12');
    assert.equal(service.headers['grpc-message'], 'unknown service no.such.Service');
  });

  test('a unary answer is headers, one message, then status 0 in the trailers', async () => {
    const res = await rawCall(`/${VERSION}/Version`, frameMessage(Buffer.alloc(0)));
    assert.equal(res.headers[':status'], 200);
    assert.equal(res.headers['content-type'], 'application/grpc');
    assert.equal(res.trailers['grpc-status'], '0');
    assert.equal(res.data.readUInt32BE(1), res.data.length - 5);
    assert.deepEqual(await conn.service(VERSION).unary('Version', {}), { version: 'v', revision: 'r' });
  });

  test('malformed protobuf is InvalidArgument naming the message type', async () => {
    const res = await rawCall(`/${CONTENT}/Delete`, frameMessage(Buffer.from([0x0a, 0xff, 0xff])), { 'containerd-namespace': 'n' });
    assert.equal(res.headers['grpc-status'], '3');
    assert.match(String(res.headers['grpc-message']), /^malformed containerd\.services\.content\.v1\.DeleteContentRequest/);
  });

  test('a message over the limit is ResourceExhausted; a compressed one Unimplemented; a truncated one Internal', async () => {
    const big = await rawCall(`/${CONTENT}/Delete`, frameMessage(Buffer.alloc(5000)));
    assert.equal(big.headers['grpc-status'], '8');
    const compressed = frameMessage(Buffer.alloc(3));
    compressed[0] = 1;
    const gz = await rawCall(`/${CONTENT}/Delete`, compressed, { 'grpc-encoding': 'gzip' });
    assert.equal(gz.headers['grpc-status'], '12');
    const truncated = await rawCall(`/${CONTENT}/Delete`, frameMessage(Buffer.alloc(10)).subarray(0, 8));
    assert.equal(truncated.headers['grpc-status'], '13');
    // On a connection that goes on: the refused request is drained, and the next call is answered.
    const content = conn.service(CONTENT);
    await assert.rejects(content.unary('Delete', { digest: 'x'.repeat(64 * 1024) }, { namespace: 'n' }), /message of \d+ bytes is larger than the limit, 4096/);
    assert.deepEqual(await content.unary('Delete', { digest: 'x' }, { namespace: 'n' }), {});
  });

  test('status messages are percent-encoded', async () => {
    const strict = new GrpcServer({ log: silent });
    const path = join(dir, 'enc.sock');
    bindService(
      strict,
      protoRoot(),
      {
        service: VERSION,
        implementation: {
          version: async () => {
            throw new NotFoundError('100% “not” here\n');
          },
        },
      },
      silent,
    );
    await strict.listen(path);
    const client = new GrpcConnection(path);
    try {
      await assert.rejects(client.service(VERSION).unary('Version', {}), { name: 'NotFoundError', message: '100% “not” here\n' });
    } finally {
      client.close();
      await strict.close(0);
    }
  });

  test('a non-gRPC content type is 415', async () => {
    const res = await rawCall(`/${VERSION}/Version`, Buffer.alloc(0), { 'content-type': 'text/plain' });
    assert.equal(res.headers[':status'], 415);
  });

  test("the client's deadline ends the call as DeadlineExceeded and aborts the handler's signal", async () => {
    await assert.rejects(conn.service(CONTENT).unary('Info', { digest: 'x' }, { namespace: 'n', timeout: 100 }), {
      name: 'DeadlineExceededError',
    });
    await aborted;
  });

  test('server streams, and bidirectional streams both ways', async () => {
    const chunks: number[] = [];
    for await (const res of conn.service(CONTENT).serverStream<{ offset: number; data: Uint8Array }>('Read', { digest: 'd', size: 50 }, { namespace: 'n' })) {
      chunks.push(res.data[0] ?? -1);
    }
    assert.deepEqual(chunks, Array.from({ length: 50 }, (_, i) => i));

    const stream = bidiStream<object, { offset: number; digest: string }>(conn, CONTENT, 'Write', { namespace: 'n' });
    const answers: number[] = [];
    const reading = (async () => {
      for await (const res of stream.responses) answers.push(res.offset);
    })();
    for (let i = 0; i < 20; i++) await stream.write({ action: 2, ref: 'r', offset: i * 100, data: Buffer.alloc(100) });
    stream.end();
    await reading;
    assert.deepEqual(answers, Array.from({ length: 20 }, (_, i) => (i + 1) * 100));
  });

  test('a client sees 4 MiB stream windows and a 16 MiB connection window', async () => {
    const client = http2Connect('http://localhost', { createConnection: () => netConnect(socket) });
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('remoteSettings', () => resolve());
        client.once('error', reject);
      });
      assert.equal(client.remoteSettings.initialWindowSize, STREAM_WINDOW_BYTES);
      // The connection window comes as a WINDOW_UPDATE right after the settings.
      for (const deadline = Date.now() + 2000; (client.state.remoteWindowSize ?? 0) < CONNECTION_WINDOW_BYTES && Date.now() < deadline; ) {
        await sleep(10);
      }
      assert.equal(client.state.remoteWindowSize, CONNECTION_WINDOW_BYTES);
    } finally {
      client.destroy();
    }
  });

  test('close() lets a call in flight finish, then cuts a stream that never ends', async () => {
    const path = join(dir, 'close.sock');
    const closing = new GrpcServer({ log: silent });
    let release!: () => void;
    const slow = new Promise<void>((resolve) => {
      release = resolve;
    });
    bindService(
      closing,
      protoRoot(),
      {
        service: 'containerd.services.events.v1.Events',
        implementation: {
          publish: async () => {
            await slow;
            return {};
          },
          forward: async () => ({}),
          subscribe: async function* (_req: unknown, ctx: RequestContext) {
            yield { topic: '/first', namespace: 'n' };
            await new Promise((resolve) => ctx.signal?.addEventListener('abort', resolve, { once: true }));
          },
        },
      },
      silent,
    );
    await closing.listen(path);
    const client = new GrpcConnection(path);
    const events = client.service('containerd.services.events.v1.Events');
    try {
      const publish = events.unary('Publish', { topic: '/t' }, { namespace: 'n' });
      const topics: string[] = [];
      const subscribed = (async () => {
        for await (const env of events.serverStream<{ topic: string }>('Subscribe', {}, { namespace: 'n' })) topics.push(env.topic);
      })().catch((err: Error) => err.name);
      while (topics.length === 0) await sleep(5);
      const closed = closing.close(300);
      release();
      await publish;
      await closed;
      assert.equal(typeof (await subscribed), 'string');
      assert.deepEqual(topics, ['/first']);
    } finally {
      client.close();
    }
  });
});
