import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { type ErrorKind, errorKindOf, type SnapshotInfo } from '@berth/plugin-api';
import { Level } from 'level';
import { SnapshotMetaStore, SnapshotStoreOpenError } from './snapshot-meta-store.js';

const kind = (k: ErrorKind) => (err: unknown) => {
  assert.equal(errorKindOf(err), k, `expected ${k}, got ${(err as Error).message}`);
  return true;
};

describe('SnapshotMetaStore', () => {
  let dir: string;
  let store: SnapshotMetaStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-snapshot-meta-'));
    store = await SnapshotMetaStore.open(join(dir, 'db'));
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const create = (k: 'active' | 'view', key: string, parent?: string, labels?: Record<string, string>) =>
    store.update((tx) => tx.createSnapshot(k, key, parent, labels));
  const commit = (key: string, name: string, labels?: Record<string, string>) =>
    store.update((tx) => tx.commitActive(key, name, { size: 10, inodes: 2 }, labels));

  test('gives increasing ids and the parent chain, nearest first', async () => {
    const a = await create('active', 'a');
    assert.deepEqual(a, { id: '1', kind: 'active', parentIds: [] });
    assert.equal(await commit('a', 'A'), '1');
    const b = await create('active', 'b', 'A');
    assert.deepEqual(b, { id: '2', kind: 'active', parentIds: ['1'] });
    await commit('b', 'B');
    const v = await create('view', 'v', 'B');
    assert.deepEqual(v, { id: '3', kind: 'view', parentIds: ['2', '1'] });
    assert.deepEqual(await store.view((tx) => tx.getSnapshot('v')), v);
    assert.deepEqual([...(await store.view((tx) => tx.idMap()))], [['1', 'A'], ['2', 'B'], ['3', 'v']]);
  });

  test('never reuses an id, not even after a removal and a reopen', async () => {
    await create('active', 'a');
    await store.update((tx) => tx.remove('a'));
    await store.close();
    store = await SnapshotMetaStore.open(join(dir, 'db'));
    assert.equal((await create('active', 'b')).id, '2');
  });

  test('records info, labels and usage through commit', async () => {
    await create('active', 'a', undefined, { x: '1', empty: '' });
    let { id, info, usage } = await store.view((tx) => tx.getInfo('a'));
    assert.equal(id, '1');
    assert.equal(info.kind, 'active');
    assert.equal(info.parent, undefined);
    assert.deepEqual(info.labels, { x: '1' }, 'empty label values are dropped');
    assert.deepEqual(usage, { size: 0, inodes: 0 });
    await commit('a', 'A', { y: '2' });
    ({ info, usage } = await store.view((tx) => tx.getInfo('A')));
    assert.equal(info.kind, 'committed');
    assert.deepEqual(info.labels, { y: '2' }, 'commit labels replace the active ones, as containerd');
    assert.deepEqual(usage, { size: 10, inodes: 2 });
    await assert.rejects(store.view((tx) => tx.getInfo('a')), kind('not-found'));
  });

  test('keeps the error contract, in containerd order', async () => {
    await create('active', 'a');
    await commit('a', 'A');
    await create('active', 'b', 'A');
    await create('view', 'v', 'A');
    await assert.rejects(create('active', 'x', 'missing'), kind('not-found'));
    await assert.rejects(create('active', 'b', 'missing'), kind('not-found'), 'the parent is checked before the key');
    await assert.rejects(create('active', 'x', 'b'), kind('invalid-argument'));
    await assert.rejects(create('active', 'b'), kind('already-exists'));
    await assert.rejects(create('view', 'A'), kind('already-exists'));
    await assert.rejects(store.update((tx) => tx.createSnapshot('committed', 'c', undefined)), kind('invalid-argument'));
    await assert.rejects(create('active', ''), kind('invalid-argument'));
    await assert.rejects(create('active', 'nul\u0000key'), kind('invalid-argument'));
    await assert.rejects(commit('b', 'A'), kind('already-exists'));
    await assert.rejects(commit('missing', 'A'), kind('already-exists'), 'the name is checked before the key');
    await assert.rejects(commit('missing', 'N'), kind('not-found'));
    await assert.rejects(commit('v', 'N'), kind('failed-precondition'));
    await assert.rejects(commit('A', 'N'), kind('failed-precondition'));
    await assert.rejects(store.view((tx) => tx.getSnapshot('A')), kind('failed-precondition'));
    await assert.rejects(store.update((tx) => tx.remove('A')), kind('failed-precondition'));
    await assert.rejects(store.update((tx) => tx.remove('missing')), kind('not-found'));
    await assert.rejects(store.update((tx) => tx.updateInfo({ name: 'b', labels: {} }, ['parent'])), kind('invalid-argument'));
    await assert.rejects(store.update((tx) => tx.updateInfo({ name: 'b', labels: { k: 'x'.repeat(4096) } }, [])), kind('invalid-argument'));
  });

  test('removes children before parents, and commit moves the child link to the new name', async () => {
    await create('active', 'a');
    await commit('a', 'A');
    await create('active', 'b', 'A');
    await commit('b', 'B');
    await assert.rejects(store.update((tx) => tx.remove('A')), kind('failed-precondition'));
    assert.deepEqual(await store.update((tx) => tx.remove('B')), { id: '2', kind: 'committed' });
    assert.deepEqual(await store.update((tx) => tx.remove('A')), { id: '1', kind: 'committed' });
  });

  test('drops a transaction that throws and writes nothing of it', async () => {
    await assert.rejects(
      store.update(async (tx) => {
        await tx.createSnapshot('active', 'a', undefined);
        throw new Error('boom');
      }),
      /boom/,
    );
    await assert.rejects(store.view((tx) => tx.getInfo('a')), kind('not-found'));
    assert.equal((await create('active', 'a')).id, '1', 'the sequence did not move either');
  });

  test('sees its own writes inside a transaction', async () => {
    await store.update(async (tx) => {
      await tx.createSnapshot('active', 'a', undefined);
      await tx.commitActive('a', 'A', { size: 0, inodes: 1 });
      const b = await tx.createSnapshot('active', 'b', 'A');
      assert.deepEqual(b.parentIds, ['1']);
      assert.deepEqual([...(await tx.idMap()).values()], ['A', 'b']);
      await assert.rejects(tx.remove('A'), kind('failed-precondition'));
    });
  });

  test('serialises writers: concurrent creates of one key, one wins', async () => {
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => create('active', 'same')));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => create('active', `k${i}`)));
    assert.equal(new Set(ids.map((s) => s.id)).size, 10);
  });

  test('updates labels by path and moves updatedAt only', async () => {
    await create('active', 'a', undefined, { a: '1', b: '2' });
    const before = (await store.view((tx) => tx.getInfo('a'))).info;
    await new Promise((r) => setTimeout(r, 5));
    const after = await store.update((tx) => tx.updateInfo({ name: 'a', labels: { b: '', c: '3' } }, ['labels.b', 'labels.c']));
    assert.deepEqual(after.labels, { a: '1', c: '3' });
    assert.equal(after.createdAt.getTime(), before.createdAt.getTime());
    assert.ok(after.updatedAt > before.updatedAt);
  });

  test('walks in key order with containerd filter fields', async () => {
    await create('active', 'p-a', undefined, { 'containerd.io/gc.root': 'x' });
    await commit('p-a', 'p');
    await create('active', 'b', 'p', { 'a.b': 'dotted' });
    await create('view', 'a', 'p');
    const walk = async (...filters: string[]) => {
      const names: string[] = [];
      await store.view((tx) => tx.walk((i: SnapshotInfo) => void names.push(i.name), filters));
      return names;
    };
    assert.deepEqual(await walk(), ['a', 'b', 'p']);
    assert.deepEqual(await walk('kind==view'), ['a']);
    assert.deepEqual(await walk('parent==p'), ['a', 'b']);
    assert.deepEqual(await walk('parent==""'), ['p'], 'parent is present, empty, on a base snapshot');
    assert.deepEqual(await walk('labels."a.b"==dotted'), ['b']);
    assert.deepEqual(await walk('labels.a.b'), ['b']);
    assert.deepEqual(await walk('name~=^[ab]$', 'kind==committed'), ['a', 'b', 'p']);
    assert.deepEqual(await walk('labels'), [], 'labels alone is no field');
    await assert.rejects(walk('kind=='), kind('invalid-argument'));
  });

  test('reads are consistent while a writer runs', async () => {
    await create('active', 'a');
    await commit('a', 'A');
    await create('active', 'b', 'A');
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const writer = store.update(async (tx) => {
      await tx.remove('b');
      await held;
    });
    // The pending removal is not visible to readers until the batch lands.
    assert.deepEqual((await store.view((tx) => tx.getSnapshot('b'))).parentIds, ['1']);
    release();
    await writer;
    await assert.rejects(store.view((tx) => tx.getSnapshot('b')), kind('not-found'));
  });

  test('close waits for the writer, twice is fine, and later use is refused', async () => {
    const w = create('active', 'a');
    await store.close();
    await w;
    await store.close();
    assert.throws(() => store.update(async () => {}), /closed/);
  });

  test('refuses a locked, foreign or newer database', async () => {
    await assert.rejects(SnapshotMetaStore.open(join(dir, 'db')), (err: Error) => err instanceof SnapshotStoreOpenError && /locked/.test(err.message));

    const foreign = new Level<string, string>(join(dir, 'foreign'));
    await foreign.put('x', 'y');
    await foreign.close();
    await assert.rejects(SnapshotMetaStore.open(join(dir, 'foreign')), /no schema version/);

    const newer = new Level<string, string>(join(dir, 'newer'));
    await newer.put('m\u0000schema', '99');
    await newer.close();
    await assert.rejects(SnapshotMetaStore.open(join(dir, 'newer')), /schema version 99/);
  });
});
