import * as grpc from '@grpc/grpc-js';
import { GrpcConnection, grpcTarget, loadProtoRoot } from '@berth/api';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ctr, startBerthd, type TestDaemon } from './harness.js';

const HELLO_PROTO = fileURLToPath(new URL('../fixtures/plugin-hello/hello.proto', import.meta.url));

/** Raw gRPC calls a well-behaved client never makes: berthd must answer with the right code and keep serving. */
describe('gRPC wire behaviour', () => {
  let d: TestDaemon;
  let raw: grpc.Client;

  before(async () => {
    d = await startBerthd({ config: 'plugin_packages = ["berth-plugin-hello"]\n' });
    raw = new grpc.Client(grpcTarget(d.address), grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': 32 * 1024 * 1024,
    });
  });
  after(async () => {
    raw?.close();
    await d?.cleanup();
  });

  const call = (path: string, body: Buffer, namespace = 'default') =>
    new Promise<{ code: number; details: string; bytes?: Buffer }>((resolve) => {
      const md = new grpc.Metadata();
      md.set('containerd-namespace', namespace);
      raw.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        body,
        md,
        {},
        (err, bytes) => resolve(err ? { code: err.code, details: err.details } : { code: 0, details: '', bytes }),
      );
    });

  test('a malformed message is InvalidArgument and the daemon keeps serving', async () => {
    // Field 1 (string) claims 100 bytes but the message ends after 2.
    const r = await call('/containerd.services.namespaces.v1.Namespaces/Create', Buffer.from([0x0a, 0x64, 0x41, 0x42]));
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
    assert.match(r.details, /malformed containerd\.services\.namespaces\.v1\.CreateNamespaceRequest/);
    const garbage = await call('/containerd.services.namespaces.v1.Namespaces/Get', Buffer.from([0xff, 0xff, 0xff, 0xff]));
    assert.equal(garbage.code, grpc.status.INVALID_ARGUMENT);
    assert.equal((await ctr(d, ['namespaces', 'ls'])).code, 0);
  });

  test('an unknown method or service is Unimplemented', async () => {
    assert.equal((await call('/containerd.services.namespaces.v1.Namespaces/Frobnicate', Buffer.alloc(0))).code, grpc.status.UNIMPLEMENTED);
    assert.equal((await call('/containerd.services.nothing.v1.Nothing/List', Buffer.alloc(0))).code, grpc.status.UNIMPLEMENTED);
  });

  test('a bad namespace header is InvalidArgument', async () => {
    const r = await call('/containerd.services.namespaces.v1.Namespaces/List', Buffer.alloc(0), 'no/slashes');
    assert.equal(r.code, grpc.status.INVALID_ARGUMENT);
    assert.match(r.details, /namespace/);
  });

  test('messages up to 16 MiB are accepted, larger ones refused', async () => {
    const conn = new GrpcConnection(d.address);
    try {
      const events = conn.service('containerd.services.events.v1.Events');
      const big = Buffer.alloc(15 * 1024 * 1024, 7);
      await events.unary('Publish', { topic: '/berth/big', event: { type_url: 'berth.test.Blob', value: big } }, { namespace: 'default' });
    } finally {
      conn.close();
    }
    const tooBig = await call('/containerd.services.events.v1.Events/Publish', Buffer.alloc(17 * 1024 * 1024));
    assert.equal(tooBig.code, grpc.status.RESOURCE_EXHAUSTED);
  });

  test('namespace service codes match containerd', async () => {
    const conn = new GrpcConnection(d.address);
    const ns = conn.service('containerd.services.namespaces.v1.Namespaces');
    try {
      await assert.rejects(ns.unary('Delete', { name: 'never-made' }, { namespace: 'default' }), { name: 'NotFoundError' });
      // Get of an unknown name answers OK with empty labels (ctr's import, pull and run rely on it).
      assert.deepEqual((await ns.unary('Get', { name: 'unknown' })).namespace, { name: 'unknown', labels: {} });
      // Update of a missing namespace creates it, as containerd does.
      await ns.unary('Update', { namespace: { name: 'made-by-update', labels: { a: 'b' } }, updateMask: { paths: ['labels.a'] } }, { namespace: 'default' });
      assert.deepEqual((await ns.unary('Get', { name: 'made-by-update' })).namespace.labels, { a: 'b' });
      await assert.rejects(
        ns.unary('Update', { namespace: { name: 'made-by-update' }, updateMask: { paths: ['name'] } }, { namespace: 'default' }),
        { name: 'InvalidArgumentError', message: 'cannot update "name" field' },
      );
    } finally {
      conn.close();
    }
  });

  test("a third-party plugin's own gRPC service is served with its config", async () => {
    const conn = new GrpcConnection(d.address, loadProtoRoot([HELLO_PROTO]));
    try {
      const greeter = conn.service('berth.example.v1.Greeter');
      const res = await greeter.unary('Hello', { name: 'ctr' }, { namespace: 'team' });
      assert.equal(res.message, 'hello, ctr (berth 0.1.0)');
      assert.equal(res.namespace, 'team');
      await assert.rejects(greeter.unary('Hello', { name: '' }), { name: 'InvalidArgumentError' });
    } finally {
      conn.close();
    }
  });
});
