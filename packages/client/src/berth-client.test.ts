import { BERTH_VERSION } from '@berth/daemon';
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  UnavailableError,
} from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import type { EventEnvelope } from './events-client.js';
import { pluginFromWire } from './introspection-client.js';
import { startTestDaemon, type TestDaemon } from './test-daemon.js';

let d: TestDaemon;
let client: BerthClient;

before(async () => {
  d = await startTestDaemon();
  client = new BerthClient({ address: d.address, namespace: 'client-test' });
});
after(async () => {
  client?.close();
  await d?.close();
});

/**
 * Open a subscription and wait until the daemon delivers to it (a gRPC
 * stream has no "subscribed" acknowledgement): publish pings until one
 * arrives. Returns the iterator, positioned after the ping.
 */
async function subscribed(c: BerthClient, filters: string[], signal: AbortSignal): Promise<AsyncIterator<EventEnvelope>> {
  const ping = '/berth-test/ping';
  const all = filters.length === 0 ? [] : [...filters, `topic=="${ping}"`];
  const it = c.events.subscribe(all, { signal })[Symbol.asyncIterator]();
  const first = it.next();
  for (let i = 0; i < 100; i++) {
    await c.events.publish(ping, { typeUrl: 'containerd.events.NamespaceDelete', data: { name: 'ping' } });
    const got = await Promise.race([first, new Promise((r) => setTimeout(r, 50, undefined))]);
    if (got) {
      assert.equal((got as IteratorResult<EventEnvelope>).value?.topic, ping);
      // Drain further pings that raced with the first.
      return skipping(it, ping);
    }
  }
  throw new Error('subscription never received a ping');
}

function skipping(it: AsyncIterator<EventEnvelope>, topic: string): AsyncIterator<EventEnvelope> {
  return {
    next: async () => {
      for (;;) {
        const r = await it.next();
        if (r.done || r.value.topic !== topic) return r;
      }
    },
    return: async () => (it.return ? it.return() : { done: true, value: undefined }),
  };
}

describe('BerthClient', () => {
  it('reports the daemon version, server and health', async () => {
    const v = await client.version();
    assert.equal(v.version, BERTH_VERSION);
    assert.equal(typeof v.revision, 'string');
    const server = await client.server();
    assert.match(server.uuid, /^[0-9a-f-]{36}$/);
    assert.equal(server.pid, process.pid);
    assert.equal(await client.health(), 'serving');
  });

  it('takes address and namespace from the environment, else the defaults', async () => {
    const saved = { address: process.env.BERTH_ADDRESS, namespace: process.env.BERTH_NAMESPACE };
    try {
      process.env.BERTH_ADDRESS = d.address;
      process.env.BERTH_NAMESPACE = 'from-env';
      const fromEnv = new BerthClient();
      assert.equal(fromEnv.address, d.address);
      assert.equal(fromEnv.namespace, 'from-env');
      assert.equal((await fromEnv.version()).version, BERTH_VERSION);
      fromEnv.close();

      delete process.env.BERTH_ADDRESS;
      delete process.env.BERTH_NAMESPACE;
      const defaults = new BerthClient();
      assert.equal(defaults.address, '/run/berth/berthd.sock');
      assert.equal(defaults.namespace, 'default');
      defaults.close();
    } finally {
      restore('BERTH_ADDRESS', saved.address);
      restore('BERTH_NAMESPACE', saved.namespace);
    }
  });

  it('maps an unreachable daemon to UnavailableError naming the address', async () => {
    const c = new BerthClient({ address: `${d.address}.missing` });
    await assert.rejects(c.version(), (err: Error) => {
      assert.ok(err instanceof UnavailableError, `${err.name}: ${err.message}`);
      assert.match(err.message, /berthd\.sock\.missing/);
      return true;
    });
    c.close();
  });
});

describe('namespaces', () => {
  it('creates, gets, lists, updates and deletes', async () => {
    const created = await client.namespaces.create('ns-crud', { a: '1', 'b.c': '2' });
    assert.deepEqual(created, { name: 'ns-crud', labels: { a: '1', 'b.c': '2' } });
    assert.deepEqual(await client.namespaces.get('ns-crud'), created);
    const listed = await client.namespaces.list();
    assert.deepEqual(
      listed.find((n) => n.name === 'ns-crud'),
      created,
    );

    // labels.<key> paths set or (with an empty value) remove single keys.
    const updated = await client.namespaces.update('ns-crud', { a: '', d: '4' }, ['labels.a', 'labels.d']);
    assert.deepEqual(updated.labels, { 'b.c': '2', d: '4' });
    // No paths: replace every label.
    assert.deepEqual((await client.namespaces.update('ns-crud', { z: '9' })).labels, { z: '9' });

    await client.namespaces.delete('ns-crud');
    assert.equal((await client.namespaces.list()).find((n) => n.name === 'ns-crud'), undefined);
  });

  it('answers Get of an unknown name with empty labels, as containerd does', async () => {
    assert.deepEqual(await client.namespaces.get('ns-never-made'), { name: 'ns-never-made', labels: {} });
  });

  it('maps NotFound, AlreadyExists and InvalidArgument to berth errors', async () => {
    await assert.rejects(client.namespaces.delete('ns-unknown'), (err: Error) => {
      assert.ok(err instanceof NotFoundError, err.name);
      assert.equal(err.message, 'namespace "ns-unknown": not found');
      return true;
    });

    await client.namespaces.create('ns-dup');
    await assert.rejects(client.namespaces.create('ns-dup'), (err: Error) => {
      assert.ok(err instanceof AlreadyExistsError, err.name);
      assert.match(err.message, /already exists/);
      return true;
    });
    await assert.rejects(client.namespaces.update('ns-dup', {}, ['image']), InvalidArgumentError);
    await client.namespaces.delete('ns-dup');

    await assert.rejects(client.namespaces.create('bad name!'), (err: Error) => {
      assert.ok(err instanceof InvalidArgumentError, err.name);
      assert.match(err.message, /identifier "bad name!" must match/);
      return true;
    });
  });
});

describe('plugins', () => {
  it('lists plugins as PluginInfo, with filters', async () => {
    const all = await client.plugins();
    assert.ok(all.length > 0);
    const grpc = await client.plugins(['type==io.containerd.grpc.v1']);
    assert.ok(grpc.length > 0);
    assert.ok(grpc.every((p) => p.type === 'io.containerd.grpc.v1'));
    const ids = grpc.map((p) => p.id);
    for (const id of ['version', 'namespaces', 'introspection', 'events']) assert.ok(ids.includes(id), `${id} in ${ids}`);
    const ns = grpc.find((p) => p.id === 'namespaces');
    assert.deepEqual(ns?.status, { state: 'ok' });
    assert.ok(Array.isArray(ns?.requires) && Array.isArray(ns?.platforms) && typeof ns?.exports === 'object');
    assert.deepEqual(await client.plugins(['id==no-such-plugin']), []);
  });

  it('rejects a filter that does not parse with InvalidArgumentError', async () => {
    await assert.rejects(client.plugins(['type==']), InvalidArgumentError);
  });

  it('tells skipped plugins from failed ones the way ctr does', () => {
    const wire = { type: 't', id: 'i', platforms: [{ os: 'linux', architecture: 'amd64', variant: '' }] };
    assert.deepEqual(pluginFromWire({ ...wire, initErr: null }).status, { state: 'ok' });
    assert.deepEqual(pluginFromWire({ ...wire, initErr: { code: 2, message: 'skip plugin: no overlayfs' } }).status, {
      state: 'skipped',
      reason: 'no overlayfs',
    });
    // containerd's own wording puts the marker last.
    assert.deepEqual(pluginFromWire({ ...wire, initErr: { code: 2, message: 'not btrfs: skip plugin' } }).status, {
      state: 'skipped',
      reason: 'not btrfs',
    });
    assert.deepEqual(pluginFromWire({ ...wire, initErr: { code: 2, message: 'boom' } }).status, {
      state: 'error',
      message: 'boom',
    });
    assert.deepEqual(pluginFromWire(wire).platforms, [{ os: 'linux', architecture: 'amd64' }]);
  });
});

describe('events', () => {
  it('receives /namespaces/create with decoded data and the caller namespace', async () => {
    const ac = new AbortController();
    const it = await subscribed(client, ['topic~="^/namespaces/"'], ac.signal);
    const other = client.withNamespace('caller-ns');
    await other.namespaces.create('ev-created', { k: 'v' });
    const { value, done } = await it.next();
    assert.equal(done, false);
    assert.equal(value.topic, '/namespaces/create');
    assert.equal(value.namespace, 'caller-ns');
    assert.ok(value.timestamp instanceof Date && Math.abs(Date.now() - value.timestamp.getTime()) < 60_000);
    assert.equal(value.event.typeUrl, 'containerd.events.NamespaceCreate');
    assert.ok(value.event.value.length > 0);
    assert.deepEqual(value.event.data, { name: 'ev-created', labels: { k: 'v' } });
    ac.abort();
    assert.deepEqual(await it.next(), { done: true, value: undefined });
  });

  it('publishes encoded values and data, and keeps unknown types as bytes', async () => {
    const ac = new AbortController();
    const it = await subscribed(client, ['topic~="^/test/"'], ac.signal);
    await client.events.publish('/test/data', { typeUrl: 'containerd.events.NamespaceUpdate', data: { name: 'x' } });
    await client.events.publish('/test/raw', { typeUrl: 'example.com/Opaque', value: new Uint8Array([1, 2, 3]) });
    const first = (await it.next()).value as EventEnvelope;
    assert.equal(first.topic, '/test/data');
    assert.equal(first.namespace, 'client-test');
    assert.deepEqual(first.event.data, { name: 'x', labels: {} });
    const second = (await it.next()).value as EventEnvelope;
    assert.equal(second.topic, '/test/raw');
    assert.equal(second.event.typeUrl, 'example.com/Opaque');
    assert.deepEqual([...second.event.value], [1, 2, 3]);
    assert.equal(second.event.data, undefined);
    await it.return?.();
    ac.abort();
  });

  it('rejects bad filters and bad payloads', async () => {
    const it = client.events.subscribe(['topic=='])[Symbol.asyncIterator]();
    await assert.rejects(it.next(), InvalidArgumentError);
    await assert.rejects(client.events.publish('/test/x', { typeUrl: 'no.such.Type', data: {} }), InvalidArgumentError);
    await assert.rejects(client.events.publish('not-a-path', { typeUrl: 'example.com/X', value: new Uint8Array() }), InvalidArgumentError);
  });
});

function restore(name: string, value: string | undefined): void {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
}
