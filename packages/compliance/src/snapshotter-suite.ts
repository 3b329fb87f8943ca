import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  chmod,
  chown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type ErrorKind, errorKindOf, type Mount, type SnapshotInfo, type Snapshotter } from '@berth/plugin-api';

export interface SnapshotterFixture {
  readonly snapshotter: Snapshotter;
  /** Close the fixture's snapshotter (if still open) and open another on the same root. */
  reopen(): Promise<Snapshotter>;
  /**
   * Leave on disk what a crash in the middle of an operation would (entries
   * no snapshot owns: a half-built new snapshot, a half-deleted one, one whose
   * record never landed) and return their paths; `cleanup()` must remove them.
   * Absent: the crash test is skipped.
   */
  crashLeftovers?(): Promise<string[]>;
  /** Close whatever the fixture opened and delete its root. */
  cleanup(): Promise<void>;
}

export type SnapshotterFactory = () => Promise<SnapshotterFixture>;

export interface SnapshotterSuiteOptions {
  /** Mount `mounts` on `target` in order, as a shim would (berth's own plugins pass @berth/sys mountAll). */
  mount(mounts: readonly Mount[], target: string): void | Promise<void>;
  /** Unmount everything on `target`. */
  unmount(target: string): void | Promise<void>;
  /** Layers in the long-chain test (containerd's suite: 128); 0 skips it. */
  readonly chainDepth?: number;
}

const isRoot = process.getuid?.() === 0;
const needsRoot = { skip: !isRoot && 'mounting needs root' };

/**
 * The behaviour every Snapshotter must show (after containerd's
 * snapshots/testsuite). Registers node:test cases under `describe(name)`;
 * each case gets a fresh snapshotter from `factory`. Layers are checked
 * through real mounts of what the snapshotter returns, in a scratch
 * directory, always unmounted before the case ends, pass or fail.
 *
 * Beyond the interface's comments, the suite fixes these points (all
 * containerd's): preparing on a parent that is not committed is
 * InvalidArgument; committing anything but an active snapshot is
 * FailedPrecondition, and so are `mounts` of a committed snapshot and
 * removing a snapshot with children; a committed snapshot carries only the
 * labels given to commit; an empty layer uses one inode; usage counts a
 * hard-linked file once; views are read-only whatever their depth.
 */
export function snapshotterSuite(name: string, factory: SnapshotterFactory, options: SnapshotterSuiteOptions): void {
  const chainDepth = options.chainDepth ?? 128;

  const it = (title: string, opts: { skip?: string | false }, fn: (t: SuiteContext) => Promise<void>) =>
    test(title, { ...opts, timeout: 300_000 }, async () => {
      const fixture = await factory();
      const work = await mkdtemp(join(tmpdir(), 'berth-snapshot-suite-'));
      const t = new SuiteContext(fixture, work, options);
      try {
        await fn(t);
      } finally {
        const clean = await t.unmountAll();
        await fixture.cleanup();
        // Never delete through a mount that would not go away: that would delete snapshot contents.
        if (clean) await rm(work, { recursive: true, force: true });
      }
    });

  describe(`Snapshotter compliance: ${name}`, () => {
    it('prepares, commits and views a chain of layers through real mounts', needsRoot, async (t) => {
      const s = t.snapshotter;
      const before = Date.now();
      const mounts = await s.prepare('basic-prepare', undefined, { 'containerd.io/gc.root': 'now' });
      assert.ok(mounts.length > 0, 'prepare returns mounts');
      assert.deepEqual(await s.mounts('basic-prepare'), mounts, 'mounts() repeats what prepare returned');
      const flat = await t.dir('flat');
      const layer1 = [
        file('/foo', 'foo\n', 0o777),
        dir('/a', 0o755),
        dir('/a/b', 0o755),
        dir('/a/b/c', 0o755),
        file('/a/b/c/deep', 'deep\n', 0o644),
      ];
      await t.withMount(mounts, async (target) => {
        await apply(target, layer1);
        await apply(flat, layer1);
      });
      await s.commit('basic-committed', 'basic-prepare', { 'containerd.io/gc.root': 'now' });
      await rejectsWith(s.stat('basic-prepare'), 'not-found', 'the key is gone after commit');
      const committed = await s.stat('basic-committed');
      assert.equal(committed.kind, 'committed');
      assert.equal(committed.parent, undefined);
      assert.ok(committed.createdAt.getTime() >= before - 1000);

      const layer2 = [file('/bar', 'bar\n', 0o777), file('/foo', 'foo changed\n', 0o777), remove('/a/b')];
      await t.withMount(await s.prepare('basic-next', 'basic-committed'), async (target) => {
        await t.assertTree(target, flat, 'the new layer starts as its parent');
        await apply(target, layer2);
        await apply(flat, layer2);
        await t.assertTree(target, flat, 'after changes');
      });
      await s.commit('basic-committed-next', 'basic-next');
      assert.equal((await s.stat('basic-committed-next')).parent, 'basic-committed');

      await t.withMount(await s.view('basic-view', 'basic-committed-next'), async (target) => {
        await t.assertTree(target, flat, 'a view shows every layer');
        assert.equal(await readFile(join(target, 'foo'), 'utf8'), 'foo changed\n');
      });
      await t.withMount(await s.prepare('basic-top', 'basic-committed-next'), async (target) => {
        await t.assertTree(target, flat, 'an active snapshot on two layers');
      });
      await rejectsWith(s.remove('basic-committed'), 'failed-precondition', 'a parent cannot go before its children');
    });

    it('stats active and committed snapshots', {}, async (t) => {
      const s = t.snapshotter;
      const before = Date.now() - 1000;
      await s.prepare('stat-active', undefined, { a: '1', b: '2' });
      const active = await s.stat('stat-active');
      assert.equal(active.name, 'stat-active');
      assert.equal(active.kind, 'active');
      assert.equal(active.parent, undefined);
      assert.deepEqual({ ...active.labels }, { a: '1', b: '2' });
      assert.ok(active.createdAt instanceof Date && active.createdAt.getTime() >= before);
      assert.equal(active.updatedAt.getTime(), active.createdAt.getTime());

      await s.commit('stat-committed', 'stat-active', { c: '3' });
      const committed = await s.stat('stat-committed');
      assert.equal(committed.name, 'stat-committed');
      assert.equal(committed.kind, 'committed');
      assert.deepEqual({ ...committed.labels }, { c: '3' }, 'a committed snapshot carries the labels given to commit');

      await s.view('stat-view', 'stat-committed', { v: 'x' });
      const view = await s.stat('stat-view');
      assert.equal(view.kind, 'view');
      assert.equal(view.parent, 'stat-committed');
      assert.deepEqual({ ...view.labels }, { v: 'x' });
    });

    it('links parents transitively (A <- B <- C)', {}, async (t) => {
      const s = t.snapshotter;
      await s.prepare('trans-a-active', undefined);
      await s.commit('trans-a', 'trans-a-active');
      await s.prepare('trans-b-active', 'trans-a');
      await s.commit('trans-b', 'trans-b-active');
      await s.prepare('trans-c', 'trans-b');
      assert.equal((await s.stat('trans-c')).parent, 'trans-b');
      assert.equal((await s.stat('trans-b')).parent, 'trans-a');
      assert.equal((await s.stat('trans-a')).parent, undefined);
    });

    it('answers with containerd error kinds and changes nothing when it refuses', {}, async (t) => {
      const s = t.snapshotter;
      await s.prepare('err-base-active', undefined);
      await s.commit('err-base', 'err-base-active');
      await s.prepare('err-active', 'err-base');
      await s.view('err-view', 'err-base');
      const names = async () => (await collectWalk(s)).map((i) => i.name).sort();
      const before = await names();

      await rejectsWith(s.prepare('err-x', 'err-missing'), 'not-found', 'prepare on a missing parent');
      await rejectsWith(s.view('err-x', 'err-missing'), 'not-found', 'view on a missing parent');
      await rejectsWith(s.prepare('err-x', 'err-active'), 'invalid-argument', 'prepare on an active parent');
      await rejectsWith(s.view('err-x', 'err-view'), 'invalid-argument', 'view on a view');
      await rejectsWith(s.prepare('err-active', undefined), 'already-exists', 'prepare with a key in use');
      await rejectsWith(s.view('err-active', 'err-base'), 'already-exists', 'view with a key in use');
      await rejectsWith(s.prepare('err-base', undefined), 'already-exists', 'prepare with a committed name');
      await rejectsWith(s.commit('err-base', 'err-active'), 'already-exists', 'commit to a name in use');
      await rejectsWith(s.commit('err-new', 'err-view'), 'failed-precondition', 'commit of a view');
      await rejectsWith(s.commit('err-new', 'err-base'), 'failed-precondition', 'commit of a committed snapshot');
      await rejectsWith(s.commit('err-new', 'err-missing'), 'not-found', 'commit of a missing key');
      await rejectsWith(s.mounts('err-base'), 'failed-precondition', 'mounts of a committed snapshot');
      for (const [what, op] of [
        ['stat', () => s.stat('err-missing')],
        ['usage', () => s.usage('err-missing')],
        ['mounts', () => s.mounts('err-missing')],
        ['remove', () => s.remove('err-missing')],
        ['update', () => s.update({ name: 'err-missing', labels: {} }, [])],
      ] as const) {
        await rejectsWith(op(), 'not-found', `${what} of a missing key`);
      }
      await rejectsWith(s.update({ name: 'err-active', labels: {} }, ['parent']), 'invalid-argument', 'update of the parent');
      await rejectsWith(s.prepare('', undefined), 'invalid-argument', 'an empty key');
      await rejectsWith(s.prepare('err-big', undefined, { big: 'x'.repeat(5000) }), 'invalid-argument', 'a label over 4096 bytes');
      await rejectsWith(s.walk(() => {}, ['kind=']), 'invalid-argument', 'a bad filter');

      assert.deepEqual(await names(), before, 'refused operations change nothing');
      assert.equal((await s.stat('err-active')).kind, 'active');
      // Still usable after all that.
      await s.commit('err-active-committed', 'err-active');
    });

    it('updates labels by field path and keeps the rest (containerd checkUpdate)', {}, async (t) => {
      const s = t.snapshotter;
      await s.prepare('upd-c1-a', undefined);
      await s.commit('upd-c1', 'upd-c1-a');
      await s.prepare('upd-a1', 'upd-c1');
      await s.view('upd-v1', 'upd-c1');
      for (const key of ['upd-c1', 'upd-a1', 'upd-v1']) {
        const st = await s.stat(key);
        const created = st.createdAt.getTime();
        await new Promise((r) => setTimeout(r, 5));
        let info = await s.update({ name: key, labels: { l1: 'v1', l2: 'v2', l3: 'v3' } }, []);
        assert.deepEqual({ ...info.labels }, { l1: 'v1', l2: 'v2', l3: 'v3' }, `${key}: no paths replaces the labels`);
        assert.equal(info.createdAt.getTime(), created, `${key}: created is kept`);
        assert.ok(info.updatedAt.getTime() > created, `${key}: updated moves`);
        assert.equal(info.kind, st.kind);
        assert.equal(info.parent, st.parent);

        info = await s.update({ name: key, labels: { l1: 'updated', l4: 'v4' } }, ['labels.l1', 'labels.l2']);
        assert.deepEqual({ ...info.labels }, { l1: 'updated', l3: 'v3' }, `${key}: labels.<key> sets, a missing value deletes`);
        info = await s.update({ name: key, labels: { l4: 'v4' } }, ['labels']);
        assert.deepEqual({ ...info.labels }, { l4: 'v4' }, `${key}: "labels" replaces them all`);
        info = await s.update({ name: key, labels: { 'a.b': 'dotted', l4: '' } }, ['labels.a.b', 'labels.l4']);
        assert.deepEqual({ ...info.labels }, { 'a.b': 'dotted' }, `${key}: the key is all after "labels.", an empty value deletes`);
        assert.deepEqual({ ...(await s.stat(key)).labels }, { 'a.b': 'dotted' }, `${key}: stat sees the update`);
      }
    });

    it('reports usage: measured while active, recorded at commit, hard links once', needsRoot, async (t) => {
      const s = t.snapshotter;
      await s.prepare('usage-empty', undefined);
      const empty = await s.usage('usage-empty');
      assert.equal(empty.inodes, 1, 'an empty layer is its root directory');

      const data = 'x'.repeat(64 * 1024);
      await t.withMount(await s.prepare('usage-active', undefined), async (target) => {
        await writeFile(join(target, 'big'), data);
        await link(join(target, 'big'), join(target, 'big-link'));
      });
      const active = await s.usage('usage-active');
      assert.equal(active.inodes, 2, 'root and one file, its two names counted once');
      assert.ok(active.size >= data.length, `size ${active.size} covers the file`);
      assert.ok(active.size < 2 * data.length, `size ${active.size} counts the hard-linked file once`);
      await s.commit('usage-committed', 'usage-active');
      assert.deepEqual(await s.usage('usage-committed'), active, 'commit records what it measured');

      await t.withMount(await s.prepare('usage-child', 'usage-committed'), async (target) => {
        await writeFile(join(target, 'small'), 'y');
      });
      // What a child counts differs: overlayfs its own changes, native its whole copy (both as containerd).
      const child = await s.usage('usage-child');
      assert.ok(child.inodes >= 2 && child.size > 0, 'a child is measured in its own directory');
    });

    it('walks with containerd filters (containerd checkWalk)', {}, async (t) => {
      const s = t.snapshotter;
      const gc = { 'containerd.io/gc.root': 'check-walk' };
      await s.prepare('a-np', undefined, gc);
      await s.prepare('p-tmp', undefined, gc);
      await s.commit('p', 'p-tmp', gc);
      await s.prepare('a', 'p', gc);
      await s.view('v', 'p', gc);
      await s.prepare('p-wl-tmp', undefined, gc);
      await s.commit('p-wl', 'p-wl-tmp', { l: '1', ...gc });
      await s.prepare('a-wl', 'p-wl', { l: '2', ...gc });
      await s.view('v-wl', 'p-wl', { l: '3', ...gc });
      await s.prepare('a-np-wl', undefined, { l: '2', ...gc });

      const cases: Array<[filters: string[], matches: string[]]> = [
        [['labels."containerd.io/gc.root"==check-walk'], ['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl']],
        [['kind==active,labels."containerd.io/gc.root"==check-walk'], ['a-np', 'a', 'a-wl', 'a-np-wl']],
        [['kind==view,labels."containerd.io/gc.root"==check-walk'], ['v', 'v-wl']],
        [['kind==committed,labels."containerd.io/gc.root"==check-walk'], ['p', 'p-wl']],
        [['name==p', 'name==a-np-wl'], ['p', 'a-np-wl']],
        [['name==a-wl,labels.l'], ['a-wl']],
        [['parent==p'], ['a', 'v']],
        [['parent!="",labels."containerd.io/gc.root"==check-walk'], ['a', 'v', 'a-wl', 'v-wl']],
        [['labels.l'], ['p-wl', 'a-wl', 'v-wl', 'a-np-wl']],
        [['labels.l==2'], ['a-wl', 'a-np-wl']],
        [['labels.l~=^[23]$,kind!=view'], ['a-wl', 'a-np-wl']],
        [[], ['a-np', 'p', 'a', 'v', 'p-wl', 'a-wl', 'v-wl', 'a-np-wl']],
      ];
      for (const [filters, matches] of cases) {
        const actual = (await collectWalk(s, filters)).map((i) => i.name).sort();
        assert.deepEqual(actual, [...matches].sort(), `walk ${JSON.stringify(filters)}`);
      }
      // Stat inside a walk (containerd checkStatInWalk): the walk must not hold anything that stat waits for.
      await s.walk(async (info) => {
        const st = await s.stat(info.name);
        assert.equal(st.name, info.name);
        assert.deepEqual({ ...st.labels }, { ...info.labels });
      });
    });

    it('removes children before parents and frees keys for reuse (containerd checkRemove)', {}, async (t) => {
      const s = t.snapshotter;
      await s.prepare('rm-base-a', undefined);
      await s.commit('rm-base', 'rm-base-a');
      await s.prepare('rm-mid-a', 'rm-base');
      await s.commit('rm-mid', 'rm-mid-a');
      await s.prepare('rm-top', 'rm-mid');
      await rejectsWith(s.remove('rm-mid'), 'failed-precondition', 'an intermediate layer with a child');
      await rejectsWith(s.remove('rm-base'), 'failed-precondition', 'a base layer with a child');
      await s.remove('rm-top');
      await s.remove('rm-mid');
      await s.remove('rm-base');
      await rejectsWith(s.stat('rm-base'), 'not-found', 'gone');

      await s.prepare('committed-a', undefined);
      await s.commit('committed-1', 'committed-a');
      await s.prepare('reuse-1', 'committed-1');
      await s.remove('reuse-1');
      await s.view('reuse-1', 'committed-1');
      await rejectsWith(s.remove('committed-1'), 'failed-precondition', 'a view is a child too');
      await s.remove('reuse-1');
      await s.prepare('reuse-1', undefined);
      await s.remove('committed-1');
      await s.commit('committed-1', 'reuse-1');
      assert.equal((await s.stat('committed-1')).kind, 'committed');
      assert.deepEqual((await collectWalk(s)).map((i) => i.name), ['committed-1']);
    });

    it('hides what upper layers delete, rename or replace (whiteouts, opaque directories)', needsRoot, async (t) => {
      const layers: Op[][] = [
        [
          file('/foo', 'foo\n', 0o644),
          file('/foobar', 'foobar\n', 0o644),
          dir('/dir1', 0o700),
          file('/dir1/f1', 'Hello', 0o644),
          dir('/dir2', 0o700),
          file('/dir2/f2', '...', 0o644),
          dir('/keep', 0o755),
          file('/keep/a', 'a', 0o644),
          dir('/sub', 0o755),
          dir('/sub/deep', 0o755),
          file('/sub/deep/x', 'x', 0o644),
          symlinkOp('foo', '/lnk'),
          file('/exec', '#!/bin/sh\n', 0o755),
        ],
        [
          remove('/foobar'),
          remove('/dir1'),
          dir('/dir3', 0o700),
          file('/dir3/f1', 'Hello', 0o644),
          linkOp('/dir2/f2', '/dir3/f2'),
          remove('/dir2/f2'),
          remove('/sub'),
          dir('/sub', 0o755),
          file('/sub/new', 'new', 0o644),
          chmodOp('/keep/a', 0o600),
          chownOp('/keep', 1000, 1000),
          renameOp('/foo', '/foo2'),
          symlinkOp('foo2', '/lnk2'),
        ],
        [
          file('/foobar', 'back again\n', 0o600),
          dir('/dir1', 0o755),
          file('/dir1/other', 'other', 0o644),
          remove('/lnk'),
          file('/sub/deep', 'now a file', 0o644),
        ],
        [],
      ];
      await t.checkLayers(layers);
      // The bottom's deleted names must not come back through any layer.
      await t.withMount(await t.snapshotter.view('whiteout-view', t.lastCommitted), async (target) => {
        for (const gone of ['foo', 'dir1/f1', 'dir2/f2', 'sub/deep/x', 'lnk']) {
          await assert.rejects(lstat(join(target, gone)), { code: /ENOENT|ENOTDIR/ }, `${gone} stays deleted`);
        }
        assert.equal(await readFile(join(target, 'foobar'), 'utf8'), 'back again\n');
      });
    });

    it('mounts views read-only at every depth', needsRoot, async (t) => {
      const s = t.snapshotter;
      const viewOf = async (key: string, parent: string | undefined) => {
        await t.withMount(await s.view(key, parent), async (target) => {
          await assert.rejects(writeFile(join(target, 'testfile'), 'x'), (err: NodeJS.ErrnoException) => {
            assert.ok(['EROFS', 'EPERM', 'EACCES'].includes(err.code ?? ''), `write in view ${key} fails, got ${err.code}`);
            return true;
          });
        });
      };
      await viewOf('ro-view-empty', undefined);
      await t.withMount(await s.prepare('ro-1-a', undefined), (target) => writeFile(join(target, 'one'), '1'));
      await s.commit('ro-1', 'ro-1-a');
      await viewOf('ro-view-1', 'ro-1');
      await t.withMount(await s.prepare('ro-2-a', 'ro-1'), (target) => writeFile(join(target, 'two'), '2'));
      await s.commit('ro-2', 'ro-2-a');
      await viewOf('ro-view-2', 'ro-2');
      await t.withMount(await s.view('ro-view-2b', 'ro-2'), async (target) => {
        assert.equal(await readFile(join(target, 'one'), 'utf8'), '1');
        assert.equal(await readFile(join(target, 'two'), 'utf8'), '2');
      });
      await s.remove('ro-view-2');
      await s.remove('ro-view-2b');
      await s.remove('ro-2');
    });

    it("gives a new layer a 0755 root owned like its parent's", needsRoot, async (t) => {
      const s = t.snapshotter;
      await t.withMount(await s.prepare('perm-base', undefined), async (target) => {
        assert.equal((await lstat(target)).mode & 0o7777, 0o755, 'a new root is 0755');
        await chown(target, 1234, 5678);
      });
      await s.commit('perm-committed', 'perm-base');
      await t.withMount(await s.prepare('perm-child', 'perm-committed'), async (target) => {
        const st = await lstat(target);
        assert.deepEqual([st.uid, st.gid], [1234, 5678], "the child's root keeps the parent's owner");
      });
    });

    it(`mounts a chain ${chainDepth} layers deep and reads the bottom through the top`, { skip: (!isRoot && 'mounting needs root') || (chainDepth === 0 && 'chainDepth is 0') }, async (t) => {
      const layers: Op[][] = [
        [
          file('/bottom', 'way at the bottom\n', 0o777),
          file('/overwriteme', 'FIRST!\n', 0o777),
          dir('/ADDHERE', 0o755),
          dir('/ONLYME', 0o755),
          file('/ONLYME/bottom', 'bye!\n', 0o777),
        ],
      ];
      for (let i = 1; i < chainDepth; i++) {
        layers.push([
          file('/overwriteme', `${i} WAS HERE!\n`, 0o777),
          file(`/ADDHERE/file-${i}`, 'same\n', 0o755),
          remove('/ONLYME'),
          dir('/ONLYME', 0o755),
          file(`/ONLYME/file-${i}`, 'only me!\n', 0o777),
        ]);
      }
      await t.checkLayers(layers, { compareEvery: 16 });
      const mounts = await t.snapshotter.view('chain-view', t.lastCommitted);
      await t.withMount(mounts, async (target) => {
        assert.equal(await readFile(join(target, 'bottom'), 'utf8'), 'way at the bottom\n');
        assert.equal(await readFile(join(target, 'overwriteme'), 'utf8'), `${chainDepth - 1} WAS HERE!\n`);
        assert.deepEqual(await readdir(join(target, 'ONLYME')), chainDepth > 1 ? [`file-${chainDepth - 1}`] : ['bottom']);
        assert.equal((await readdir(join(target, 'ADDHERE'))).length, chainDepth - 1);
        await t.assertTree(target, t.flat, 'the whole chain');
      });
    });

    it('cleanup removes what a crash left and keeps every snapshot', needsRoot, async (t) => {
      const fixture = t.fixture;
      if (!fixture.crashLeftovers) return;
      const s = t.snapshotter;
      await t.withMount(await s.prepare('crash-base-a', undefined), (target) => writeFile(join(target, 'kept'), 'kept'));
      await s.commit('crash-base', 'crash-base-a');
      await s.prepare('crash-active', 'crash-base');
      await s.view('crash-view', 'crash-base');
      await s.prepare('crash-removed', undefined);
      await s.remove('crash-removed');
      const leftovers = await fixture.crashLeftovers();
      assert.ok(leftovers.length > 0, 'the fixture planted something');
      await s.cleanup?.();
      for (const path of leftovers) await assert.rejects(lstat(path), { code: 'ENOENT' }, `${path} is removed`);
      await s.cleanup?.(); // nothing left to do is fine
      for (const key of ['crash-active', 'crash-view']) {
        await t.withMount(await s.mounts(key), async (target) => {
          assert.equal(await readFile(join(target, 'kept'), 'utf8'), 'kept', `${key} still sees its parent`);
        });
      }
      await s.prepare('crash-after', 'crash-base');
    });

    it('a second instance on the same root sees the same snapshots', needsRoot, async (t) => {
      const first = t.snapshotter;
      await t.withMount(await first.prepare('reopen-base-a', undefined, { l: '1' }), (target) => writeFile(join(target, 'f'), 'from the first'));
      await first.commit('reopen-base', 'reopen-base-a', { l: 'c' });
      const activeMounts = await first.prepare('reopen-active', 'reopen-base', { l: 'a' });
      const viewMounts = await first.view('reopen-view', 'reopen-base');
      const infos = await collectWalk(first);
      const usage = await first.usage('reopen-base');

      const second = await t.reopen();
      assert.deepEqual(await collectWalk(second), infos, 'walk after reopening');
      assert.deepEqual(await second.stat('reopen-base'), await infos.find((i) => i.name === 'reopen-base'));
      assert.deepEqual(await second.mounts('reopen-active'), activeMounts);
      assert.deepEqual(await second.mounts('reopen-view'), viewMounts);
      assert.deepEqual(await second.usage('reopen-base'), usage);
      await t.withMount(await second.mounts('reopen-active'), async (target) => {
        assert.equal(await readFile(join(target, 'f'), 'utf8'), 'from the first');
        await writeFile(join(target, 'g'), 'from the second');
      });
      // New snapshots must not reuse the ids (directories) of existing ones.
      await t.withMount(await second.prepare('reopen-new', 'reopen-base'), async (target) => {
        await assert.rejects(lstat(join(target, 'g')), { code: 'ENOENT' }, 'a new snapshot is not an old one');
      });
      await second.commit('reopen-active-committed', 'reopen-active');
      await rejectsWith(second.prepare('reopen-view', undefined), 'already-exists', 'keys survive reopening');
    });

    it('serves concurrent prepares, each with its own directory', needsRoot, async (t) => {
      const s = t.snapshotter;
      const keys = Array.from({ length: 16 }, (_, i) => `conc-${i}`);
      const all = await Promise.all(keys.map((k) => s.prepare(k, undefined)));
      const sources = new Set(all.map((m) => JSON.stringify(m)));
      assert.equal(sources.size, keys.length, 'distinct mounts');
      const dup = await Promise.allSettled(Array.from({ length: 8 }, () => s.prepare('conc-same', undefined)));
      assert.equal(dup.filter((r) => r.status === 'fulfilled').length, 1, 'one prepare of a key wins');
      for (const r of dup) if (r.status === 'rejected') assert.equal(errorKindOf(r.reason), 'already-exists');
      await Promise.all(keys.map((k, i) => t.withMount(all[i], (target) => writeFile(join(target, 'k'), k))));
      await Promise.all(keys.map((k) => s.commit(`${k}-c`, k)));
      for (const k of keys) {
        await t.withMount(await s.view(`${k}-v`, `${k}-c`), async (target) => {
          assert.equal(await readFile(join(target, 'k'), 'utf8'), k);
        });
      }
    });

    it('closes twice', {}, async (t) => {
      const s = t.snapshotter;
      await s.prepare('close-a', undefined);
      await s.commit('close-c', 'close-a');
      await s.remove('close-c');
      await s.close?.();
      await s.close?.();
    });
  });
}

/** One test case's state: its fixture, scratch directory and what it mounted. */
class SuiteContext {
  private readonly mounted: string[] = [];
  private counter = 0;
  private current: Snapshotter;
  flat = '';
  lastCommitted = '';

  constructor(
    readonly fixture: SnapshotterFixture,
    private readonly work: string,
    private readonly options: SnapshotterSuiteOptions,
  ) {
    this.current = fixture.snapshotter;
  }

  get snapshotter(): Snapshotter {
    return this.current;
  }

  async reopen(): Promise<Snapshotter> {
    this.current = await this.fixture.reopen();
    return this.current;
  }

  async dir(name: string): Promise<string> {
    const path = join(this.work, name);
    await mkdir(path, { recursive: true });
    return path;
  }

  /** Mount on a fresh directory, run `fn`, unmount whatever happens. */
  async withMount<R>(mounts: readonly Mount[], fn: (target: string) => Promise<R>): Promise<R> {
    const target = await this.dir(`mnt-${this.counter++}`);
    await this.options.mount(mounts, target);
    this.mounted.push(target);
    try {
      return await fn(target);
    } finally {
      await this.options.unmount(target);
      this.mounted.splice(this.mounted.indexOf(target), 1);
    }
  }

  /** After a failure: unmount what is still mounted. False if something would not go. */
  async unmountAll(): Promise<boolean> {
    let clean = true;
    for (const target of this.mounted.reverse()) {
      try {
        await this.options.unmount(target);
      } catch {
        clean = false;
      }
    }
    this.mounted.length = 0;
    return clean;
  }

  /**
   * Build a chain: each layer is prepared on the last, mounted, checked
   * against a plain directory holding every layer so far, changed the same
   * way as that directory, checked again, unmounted and committed.
   */
  async checkLayers(layers: Op[][], opts: { compareEvery?: number } = {}): Promise<void> {
    const every = opts.compareEvery ?? 1;
    this.flat = await this.dir('flat');
    let parent: string | undefined;
    for (const [i, ops] of layers.entries()) {
      const key = `layer-${i}-active`;
      const check = i % every === 0 || i === layers.length - 1;
      await this.withMount(await this.current.prepare(key, parent), async (target) => {
        if (check) await this.assertTree(target, this.flat, `layer ${i} before its changes`);
        await apply(target, ops);
        await apply(this.flat, ops);
        if (check) await this.assertTree(target, this.flat, `layer ${i} after its changes`);
      });
      parent = `layer-${i}`;
      await this.current.commit(parent, key);
    }
    this.lastCommitted = parent ?? '';
  }

  async assertTree(actual: string, expected: string, what: string): Promise<void> {
    assert.deepEqual(await describeTree(actual), await describeTree(expected), what);
  }
}

// --- filesystem changes applied the same way to a mount and to a plain directory

type Op = (root: string) => Promise<void>;

const at = (root: string, path: string) => join(root, path);

function file(path: string, content: string, mode: number): Op {
  return async (root) => {
    await writeFile(at(root, path), content);
    await chmod(at(root, path), mode);
  };
}
function dir(path: string, mode: number): Op {
  return async (root) => {
    await mkdir(at(root, path));
    await chmod(at(root, path), mode);
  };
}
function remove(path: string): Op {
  return (root) => rm(at(root, path), { recursive: true });
}
function linkOp(existing: string, path: string): Op {
  return (root) => link(at(root, existing), at(root, path));
}
function symlinkOp(target: string, path: string): Op {
  return (root) => symlink(target, at(root, path));
}
function chmodOp(path: string, mode: number): Op {
  return (root) => chmod(at(root, path), mode);
}
function chownOp(path: string, uid: number, gid: number): Op {
  return (root) => chown(at(root, path), uid, gid);
}
function renameOp(from: string, to: string): Op {
  return (root) => rename(at(root, from), at(root, to));
}

async function apply(root: string, ops: readonly Op[]): Promise<void> {
  for (const op of ops) await op(root);
}

/** Every entry below `root` (not `root` itself) with what a layer must preserve: type, mode, owner, content, link target. */
async function describeTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const path = join(rel, name);
      const full = join(root, path);
      const st = await lstat(full);
      const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out.push(`${path}/ ${meta}`);
        await walk(path);
      } else if (st.isSymbolicLink()) {
        out.push(`${path} -> ${await readlink(full)} ${st.uid}:${st.gid}`);
      } else if (st.isFile()) {
        const sum = createHash('sha256').update(await readFile(full)).digest('hex').slice(0, 16);
        out.push(`${path} ${meta} ${st.size} ${sum}`);
      } else {
        out.push(`${path} special ${meta} ${st.rdev}`);
      }
    }
  };
  await walk('');
  return out;
}

async function collectWalk(s: Snapshotter, filters?: readonly string[]): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  await s.walk((info) => {
    out.push(info);
  }, filters);
  return out;
}

async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, what: string): Promise<void> {
  await assert.rejects(promise, (err) => {
    assert.equal(errorKindOf(err), kind, `${what}: expected ${kind}, got ${errorKindOf(err) ?? 'no berth error'}: ${(err as Error)?.message}`);
    return true;
  });
}
