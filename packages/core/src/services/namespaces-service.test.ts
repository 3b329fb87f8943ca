import 'reflect-metadata';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import {
  AlreadyExistsError,
  type Envelope,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  type RequestContext,
} from '@berth/plugin-api';
import { EventExchangeImpl } from '../event-exchange.js';
import { LevelMetadataStore } from '../metadata/level-metadata-store.js';
import { NamespacesServiceImpl } from './namespaces-service.js';

let root: string;
let n = 0;
let store: LevelMetadataStore;
let exchange: EventExchangeImpl;
let service: NamespacesServiceImpl;
let events: Envelope[];
let stopEvents: () => Promise<void>;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-namespaces-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  store = await LevelMetadataStore.open(join(root, `db${++n}`));
  exchange = new EventExchangeImpl();
  service = new NamespacesServiceImpl(store, exchange);
  events = [];
  const abort = new AbortController();
  const consumer = (async () => {
    for await (const env of exchange.subscribe([], abort.signal)) events.push(env);
  })();
  stopEvents = async () => {
    abort.abort();
    await consumer;
  };
});

afterEach(async () => {
  await stopEvents();
  await store.close();
});

/** Events received so far, once the consumer has caught up. */
async function published(): Promise<Array<Pick<Envelope, 'namespace' | 'topic'> & { type: string; data: unknown }>> {
  await new Promise((resolve) => setImmediate(resolve));
  return events.splice(0).map((e) => ({ namespace: e.namespace, topic: e.topic, type: e.event.typeUrl, data: e.event.data }));
}

const none: RequestContext = {};
const caller: RequestContext = { namespace: 'caller' };

test('create stores the namespace and publishes /namespaces/create', async () => {
  const created = await service.create(caller, { name: 'team-a', labels: { owner: 'alice' } });
  assert.deepEqual(created, { name: 'team-a', labels: { owner: 'alice' } });
  assert.deepEqual(await service.get(caller, 'team-a'), { name: 'team-a', labels: { owner: 'alice' } });
  await service.create(none, { name: 'team-b', labels: {} });
  assert.deepEqual(await published(), [
    {
      namespace: 'caller',
      topic: '/namespaces/create',
      type: 'containerd.events.NamespaceCreate',
      data: { name: 'team-a', labels: { owner: 'alice' } },
    },
    // Without a namespace from the caller, the event is in the created one.
    { namespace: 'team-b', topic: '/namespaces/create', type: 'containerd.events.NamespaceCreate', data: { name: 'team-b', labels: {} } },
  ]);
});

test('create without labels stores empty labels', async () => {
  await service.create(none, { name: 'bare' } as never);
  assert.deepEqual(await service.get(none, 'bare'), { name: 'bare', labels: {} });
});

test('creating a namespace twice is AlreadyExists and publishes once', async () => {
  await service.create(none, { name: 'dup', labels: { v: '1' } });
  await assert.rejects(
    service.create(none, { name: 'dup', labels: { v: '2' } }),
    (err: unknown) => err instanceof AlreadyExistsError && /dup/.test(err.message),
  );
  assert.deepEqual((await service.get(none, 'dup')).labels, { v: '1' });
  assert.equal((await published()).length, 1);
});

test('get of an unknown namespace answers with empty labels', async () => {
  assert.deepEqual(await service.get(none, 'nobody'), { name: 'nobody', labels: {} });
});

test('list returns every namespace with its labels', async () => {
  assert.deepEqual(await service.list(none), []);
  await service.create(none, { name: 'b', labels: { x: 'y' } });
  await service.create(none, { name: 'a', labels: {} });
  await service.create(none, { name: 'a.b', labels: {} });
  assert.deepEqual((await service.list(none)).sort((x, y) => x.name.localeCompare(y.name)), [
    { name: 'a', labels: {} },
    { name: 'a.b', labels: {} },
    { name: 'b', labels: { x: 'y' } },
  ]);
});

test('update applies label paths and publishes /namespaces/update', async () => {
  await service.create(none, { name: 'ns', labels: { keep: '1', change: '2', drop: '3' } });
  await published();
  const updated = await service.update(caller, { name: 'ns', labels: { change: 'two', drop: '', ignored: 'x' } }, [
    'labels.change',
    'labels.drop',
  ]);
  assert.deepEqual(updated, { name: 'ns', labels: { keep: '1', change: 'two' } });
  assert.deepEqual(await service.get(none, 'ns'), updated);
  // No paths: replace all labels.
  assert.deepEqual((await service.update(none, { name: 'ns', labels: { only: 'this' } }, [])).labels, { only: 'this' });
  assert.deepEqual(await published(), [
    {
      namespace: 'caller',
      topic: '/namespaces/update',
      type: 'containerd.events.NamespaceUpdate',
      data: { name: 'ns', labels: { keep: '1', change: 'two' } },
    },
    { namespace: 'ns', topic: '/namespaces/update', type: 'containerd.events.NamespaceUpdate', data: { name: 'ns', labels: { only: 'this' } } },
  ]);
});

test('update of a missing namespace creates it, as containerd does', async () => {
  const updated = await service.update(none, { name: 'fresh', labels: { a: 'b' } }, ['labels.a']);
  assert.deepEqual(updated, { name: 'fresh', labels: { a: 'b' } });
  assert.deepEqual(await service.list(none), [{ name: 'fresh', labels: { a: 'b' } }]);
  assert.deepEqual((await published()).map((e) => e.topic), ['/namespaces/update']);
});

test('update refuses unknown paths and oversized labels, changing nothing', async () => {
  await service.create(none, { name: 'ns', labels: { a: '1' } });
  await published();
  await assert.rejects(service.update(none, { name: 'ns', labels: {} }, ['name']), InvalidArgumentError);
  await assert.rejects(
    service.update(none, { name: 'ns', labels: { big: 'x'.repeat(5000) } }, ['labels.big']),
    (err: unknown) => err instanceof InvalidArgumentError && /namespace\.labels/.test(err.message),
  );
  await assert.rejects(
    service.update(none, { name: 'bad name', labels: {} }, []),
    (err: unknown) => err instanceof InvalidArgumentError && /namespace\.name/.test(err.message),
  );
  assert.deepEqual(await service.get(none, 'ns'), { name: 'ns', labels: { a: '1' } });
  assert.deepEqual(await published(), []);
});

test('delete removes the namespace and publishes /namespaces/delete', async () => {
  await service.create(none, { name: 'gone', labels: { a: '1' } });
  await service.create(none, { name: 'stays', labels: {} });
  await published();
  await service.delete(caller, 'gone');
  await service.delete(none, 'stays');
  assert.deepEqual(await service.list(none), []);
  assert.deepEqual(await service.get(none, 'gone'), { name: 'gone', labels: {} });
  assert.deepEqual(await published(), [
    { namespace: 'caller', topic: '/namespaces/delete', type: 'containerd.events.NamespaceDelete', data: { name: 'gone' } },
    { namespace: 'stays', topic: '/namespaces/delete', type: 'containerd.events.NamespaceDelete', data: { name: 'stays' } },
  ]);
  // Deleted for good: a new create works.
  await service.create(none, { name: 'gone', labels: {} });
});

test('delete of an unknown namespace is NotFound', async () => {
  await assert.rejects(
    service.delete(none, 'nobody'),
    (err: unknown) => err instanceof NotFoundError && /nobody/.test(err.message),
  );
  assert.deepEqual(await published(), []);
});

test('delete of a namespace that still holds resources is FailedPrecondition naming them', async () => {
  await service.create(none, { name: 'busy', labels: {} });
  await service.create(none, { name: 'busy2', labels: {} });
  await store.update(async (tx) => {
    tx.putJSON(['v1', 'busy', 'images', 'x'], { target: 'sha256:1' });
    tx.putJSON(['v1', 'busy', 'containers', 'c1'], {});
    tx.putJSON(['v1', 'busy', 'containers', 'c2'], {});
    // Another namespace whose name shares a prefix does not count.
    tx.putJSON(['v1', 'busy2-other', 'images', 'y'], {});
  });
  await published();
  await assert.rejects(service.delete(none, 'busy'), (err: unknown) => {
    assert.ok(err instanceof FailedPreconditionError);
    assert.match(err.message, /images/);
    assert.match(err.message, /containers/);
    return true;
  });
  assert.deepEqual((await service.list(none)).map((ns) => ns.name).sort(), ['busy', 'busy2']);
  await service.delete(none, 'busy2');
  // Once empty, it goes.
  await store.update(async (tx) => {
    tx.del(['v1', 'busy', 'images', 'x']);
    tx.del(['v1', 'busy', 'containers', 'c1']);
    tx.del(['v1', 'busy', 'containers', 'c2']);
  });
  await service.delete(none, 'busy');
  assert.deepEqual(
    (await published()).map((e) => e.data),
    [{ name: 'busy2' }, { name: 'busy' }],
  );
});

test('a namespace created implicitly shows in list without an event', async () => {
  await store.update(async (tx) => {
    await tx.ensureNamespace('implicit');
    tx.putJSON(['v1', 'implicit', 'leases', 'l1'], {});
  });
  // A second ensure keeps what is there.
  await service.update(none, { name: 'implicit', labels: { set: 'later' } }, ['labels.set']);
  await store.update((tx) => tx.ensureNamespace('implicit'));
  assert.deepEqual(await service.list(none), [{ name: 'implicit', labels: { set: 'later' } }]);
  assert.deepEqual((await published()).map((e) => e.topic), ['/namespaces/update']);
});

test('invalid names and labels are InvalidArgument naming the field', async () => {
  const fails = (p: Promise<unknown>, field: RegExp) =>
    assert.rejects(p, (err: unknown) => err instanceof InvalidArgumentError && field.test(err.message));
  await fails(service.create(none, { name: 'Bad/Name', labels: {} }), /^namespace\.name: /);
  await fails(service.create(none, { name: '', labels: {} }), /^namespace\.name: /);
  await fails(service.create(none, { name: 'a'.repeat(77), labels: {} }), /^namespace\.name: /);
  await fails(service.create(none, { name: 'ok', labels: { k: 'v'.repeat(4096) } }), /^namespace\.labels: /);
  await fails(service.create(none, { name: 'ok', labels: { '': 'v' } }), /^namespace\.labels: /);
  await fails(service.get(none, '-x'), /^name: /);
  await fails(service.delete(none, 'x..y'), /^name: /);
  assert.deepEqual(await service.list(none), []);
  assert.deepEqual(await published(), []);
});
