import * as grpc from '@grpc/grpc-js';
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
import { after, before, describe, test } from 'node:test';
import { GrpcConnection } from './grpc-client.js';
import { bindService } from './grpc-server.js';
import { protoRoot } from './proto-root.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };

/**
 * The binder and the generic client together, over a real unix socket:
 * berth errors become gRPC codes on the way out and berth errors again on
 * the way in; the request context carries the containerd headers.
 */
describe('bindService and GrpcConnection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-api-'));
  const socket = join(dir, 'api.sock');
  const server = new grpc.Server();
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
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    conn = new GrpcConnection(socket);
  });

  after(() => {
    conn.close();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

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
          new grpc.Server(),
          protoRoot(),
          { service: 'containerd.services.version.v1.Version', implementation: {} },
          silent,
        ),
      /no handler for Version/,
    );
    assert.throws(
      () => bindService(new grpc.Server(), protoRoot(), { service: 'no.such.Service', implementation: {} }, silent),
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
