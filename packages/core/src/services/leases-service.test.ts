import 'reflect-metadata';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  type GarbageCollector,
  type GcStats,
  InvalidArgumentError,
  NotFoundError,
  type RequestContext,
  validateIdentifier,
} from '@berth/plugin-api';
import { LevelMetadataStore } from '../metadata/level-metadata-store.js';
import { LeasesServiceImpl } from './leases-service.js';

let root: string;
let n = 0;
let meta: LevelMetadataStore;
let leases: LeasesServiceImpl;
let calls: string[];

/** Records what the service asks of GC. */
const gc: GarbageCollector = {
  schedule: () => {
    calls.push('schedule');
  },
  collect: async (): Promise<GcStats> => {
    calls.push('collect');
    return { contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0, durationMs: 0 };
  },
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-leases-service-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  meta = await LevelMetadataStore.open(join(root, `db${++n}`));
  calls = [];
  leases = new LeasesServiceImpl(meta, gc);
});

afterEach(async () => {
  await meta.close();
});

const A: RequestContext = { namespace: 'ns-a' };
const B: RequestContext = { namespace: 'ns-b' };
const digest1 = `sha256:${'1'.repeat(64)}`;
const digest2 = `sha256:${'2'.repeat(64)}`;

test('create with an id stores the lease with its labels', async () => {
  const before = Date.now();
  const lease = await leases.create(A, { id: 'pull-1', labels: { 'containerd.io/gc.expire': '2030-01-01T00:00:00Z' } });
  assert.equal(lease.id, 'pull-1');
  assert.deepEqual(lease.labels, { 'containerd.io/gc.expire': '2030-01-01T00:00:00Z' });
  assert.ok(lease.createdAt.getTime() >= before - 1000 && lease.createdAt.getTime() <= Date.now());
  assert.deepEqual(await leases.list(A, []), [lease]);
  assert.deepEqual(await leases.list(B, []), []);
  assert.deepEqual(await leases.listResources(A, 'pull-1'), []);
  // Implicitly creates the namespace.
  assert.ok(await meta.view((tx) => tx.get(['namespaces', 'ns-a'])));
});

test('create without an id generates distinct valid identifiers', async () => {
  const one = await leases.create(A, {});
  const two = await leases.create(A, { id: '', labels: { a: 'b' } });
  assert.notEqual(one.id, two.id);
  validateIdentifier('id', one.id);
  validateIdentifier('id', two.id);
  assert.deepEqual(one.labels, {});
  assert.deepEqual(two.labels, { a: 'b' });
  assert.deepEqual((await leases.list(A, [])).map((l) => l.id).sort(), [one.id, two.id].sort());
});

test('a taken id is AlreadyExists; the same id in another namespace is another lease', async () => {
  await leases.create(A, { id: 'l', labels: { v: '1' } });
  await assert.rejects(
    leases.create(A, { id: 'l', labels: { v: '2' } }),
    (err: unknown) => err instanceof AlreadyExistsError && /"l"/.test(err.message),
  );
  assert.deepEqual((await leases.list(A, []))[0]?.labels, { v: '1' });
  await leases.create(B, { id: 'l' });
  assert.equal((await leases.list(B, [])).length, 1);
});

test('any lease id is taken, as containerd does; bad labels are InvalidArgument', async () => {
  // ctr generates ids such as "267566458--2yY"; containerd accepts even "bad id!".
  assert.equal((await leases.create(A, { id: '267566458--2yY' })).id, '267566458--2yY');
  assert.equal((await leases.create(A, { id: 'bad id!' })).id, 'bad id!');
  await assert.rejects(leases.create(A, { id: 'nul\u0000id' }), InvalidArgumentError);
  // Empty label values are dropped, not stored.
  assert.deepEqual((await leases.create(A, { id: 'empties', labels: { a: '', b: '1' } })).labels, { b: '1' });
  for (const id of ['267566458--2yY', 'bad id!', 'empties']) await leases.delete(A, id);
  await assert.rejects(leases.create(A, { id: 'ok', labels: { '': 'v' } }), InvalidArgumentError);
  await assert.rejects(leases.create(A, { id: 'ok', labels: { k: 'v'.repeat(5000) } }), InvalidArgumentError);
  assert.deepEqual(await leases.list(A, []), []);
  await assert.rejects(leases.list(A, ['id==']), InvalidArgumentError);
});

test('list filters on id and labels', async () => {
  await leases.create(A, { id: 'one', labels: { kind: 'pull', x: '1' } });
  await leases.create(A, { id: 'two', labels: { kind: 'pull' } });
  await leases.create(A, { id: 'three' });
  // Resources under a lease are not leases.
  await leases.addResource(A, 'one', { type: 'content', id: digest1 });
  const ids = async (filters: string[]) => (await leases.list(A, filters)).map((l) => l.id).sort();
  assert.deepEqual(await ids([]), ['one', 'three', 'two']);
  assert.deepEqual(await ids(['id==two']), ['two']);
  assert.deepEqual(await ids(['labels.kind==pull']), ['one', 'two']);
  assert.deepEqual(await ids(['labels.kind==pull,labels.x==1']), ['one']);
  assert.deepEqual(await ids(['labels.kind']), ['one', 'two']);
  assert.deepEqual(await ids(['id==three', 'labels.x==1']), ['one', 'three']);
  assert.deepEqual(await ids(['id~=^t']), ['three', 'two']);
  assert.deepEqual(await ids(['id==four']), []);
});

test('resources are added, listed and deleted by type and id', async () => {
  await leases.create(A, { id: 'l' });
  await leases.create(A, { id: 'other' });
  await leases.addResource(A, 'l', { type: 'content', id: digest1 });
  await leases.addResource(A, 'l', { type: 'content', id: digest2 });
  await leases.addResource(A, 'l', { type: 'ingests', id: 'layer-ref/with:odd.chars' });
  await leases.addResource(A, 'l', { type: 'snapshots/overlayfs', id: 'extract-1 sha256:abc' });
  await leases.addResource(A, 'other', { type: 'content', id: digest1 });
  // Adding twice is harmless.
  await leases.addResource(A, 'l', { type: 'content', id: digest1 });
  const sorted = async (id: string) =>
    (await leases.listResources(A, id)).sort((x, y) => `${x.type} ${x.id}`.localeCompare(`${y.type} ${y.id}`));
  assert.deepEqual(await sorted('l'), [
    { type: 'content', id: digest1 },
    { type: 'content', id: digest2 },
    { type: 'ingests', id: 'layer-ref/with:odd.chars' },
    { type: 'snapshots/overlayfs', id: 'extract-1 sha256:abc' },
  ]);

  await leases.deleteResource(A, 'l', { type: 'content', id: digest1 });
  await leases.deleteResource(A, 'l', { type: 'snapshots/overlayfs', id: 'extract-1 sha256:abc' });
  // Deleting one that is not there is not an error.
  await leases.deleteResource(A, 'l', { type: 'ingests', id: 'never-added' });
  assert.deepEqual(await sorted('l'), [
    { type: 'content', id: digest2 },
    { type: 'ingests', id: 'layer-ref/with:odd.chars' },
  ]);
  // Other leases keep theirs.
  assert.deepEqual(await sorted('other'), [{ type: 'content', id: digest1 }]);
  // Removing what a lease holds lets GC reclaim it.
  assert.ok(calls.includes('schedule'));
});

test('resources are validated', async () => {
  await leases.create(A, { id: 'l' });
  const fails = (type: string, id: string) => assert.rejects(leases.addResource(A, 'l', { type, id }), InvalidArgumentError);
  // Unknown resource types are Unimplemented, as containerd answers.
  const unsupported = (type: string, id: string) =>
    assert.rejects(leases.addResource(A, 'l', { type, id }), { name: 'NotImplementedError' });
  await fails('content', 'sha256:short');
  await fails('content', 'not-a-digest');
  await fails('content', '');
  await fails('ingests', '');
  await unsupported('snapshots', 'key');
  await unsupported('snapshots/', 'key');
  await unsupported('containers', 'c1');
  await unsupported('images', 'alpine');
  await unsupported('', 'x');
  await assert.rejects(leases.deleteResource(A, 'l', { type: 'bogus', id: 'x' }), { name: 'NotImplementedError' });
  assert.deepEqual(await leases.listResources(A, 'l'), []);
});

test('delete removes the lease with its resources and asks GC to run', async () => {
  await leases.create(A, { id: 'l' });
  await leases.create(A, { id: 'l2' });
  await leases.addResource(A, 'l', { type: 'content', id: digest1 });
  await leases.addResource(A, 'l', { type: 'snapshots/native', id: 'k' });
  await leases.delete(A, 'l');
  assert.deepEqual(calls, ['schedule']);
  assert.deepEqual((await leases.list(A, [])).map((l) => l.id), ['l2']);
  await assert.rejects(leases.listResources(A, 'l'), NotFoundError);
  // Nothing of it is left in the store.
  const left = await meta.view(async (tx) => {
    const keys: string[] = [];
    for await (const [key] of tx.range(['v1', 'ns-a', 'leases'])) keys.push(key.join('/'));
    return keys;
  });
  assert.deepEqual(left, ['v1/ns-a/leases/l2']);
  // Recreated, it starts empty.
  await leases.create(A, { id: 'l' });
  assert.deepEqual(await leases.listResources(A, 'l'), []);

  await leases.delete(A, 'l', { sync: true });
  assert.deepEqual(calls, ['schedule', 'collect']);
});

test('unknown leases are NotFound', async () => {
  await leases.create(B, { id: 'elsewhere' });
  const fails = (p: Promise<unknown>) => assert.rejects(p, NotFoundError);
  await fails(leases.delete(A, 'elsewhere'));
  await fails(leases.addResource(A, 'elsewhere', { type: 'content', id: digest1 }));
  await fails(leases.deleteResource(A, 'elsewhere', { type: 'content', id: digest1 }));
  await fails(leases.listResources(A, 'elsewhere'));
  assert.deepEqual(calls, []);
  assert.deepEqual(await leases.listResources(B, 'elsewhere'), []);
});

test('every call needs a namespace', async () => {
  const none: RequestContext = {};
  const fails = (p: Promise<unknown>) => assert.rejects(p, FailedPreconditionError);
  await fails(leases.create(none, { id: 'x' }));
  await fails(leases.delete(none, 'x'));
  await fails(leases.list(none, []));
  await fails(leases.addResource(none, 'x', { type: 'content', id: digest1 }));
  await fails(leases.deleteResource(none, 'x', { type: 'content', id: digest1 }));
  await fails(leases.listResources(none, 'x'));
});
