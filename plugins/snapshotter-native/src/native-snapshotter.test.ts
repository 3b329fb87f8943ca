import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { snapshotterSuite } from '@berth/compliance';
import { PluginType, Snapshotter } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';
import nativePlugin, { copyTree, NativeSnapshotter } from './index.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const needsRoot = { skip: !isRoot && 'needs root' };

async function fresh() {
  const base = await mkdtemp(join(tmpdir(), 'berth-native-'));
  const root = join(base, 'root');
  let current = await NativeSnapshotter.open(root);
  return {
    root,
    get current() {
      return current;
    },
    async reopen() {
      await current.close();
      current = await NativeSnapshotter.open(root);
      return current;
    },
    async cleanup() {
      await current.close();
      await rm(base, { recursive: true, force: true });
    },
  };
}

snapshotterSuite(
  'native',
  async () => {
    const f = await fresh();
    return {
      snapshotter: f.current,
      reopen: () => f.reopen(),
      async crashLeftovers() {
        const snapshots = join(f.root, 'snapshots');
        const planted = [join(snapshots, '999999'), join(snapshots, 'new-crashed'), join(snapshots, 'rm-5-deadbeef')];
        for (const p of planted) {
          await mkdir(join(p, 'sub'), { recursive: true });
          await writeFile(join(p, 'sub', 'file'), 'left over');
        }
        return planted;
      },
      cleanup: () => f.cleanup(),
    };
  },
  { mount: (mounts, target) => mountAll(mounts, target), unmount: (target) => unmountAll(target) },
);

describe('NativeSnapshotter', () => {
  test('mounts are containerd 1.6’s: rbind of the copy, a view binds its parent read-only', async () => {
    const f = await fresh();
    try {
      const s = f.current;
      const snap = (id: number) => join(f.root, 'snapshots', String(id));
      assert.deepEqual(await s.prepare('a', undefined), [{ type: 'bind', source: snap(1), options: ['rbind', 'rw'] }]);
      assert.deepEqual(await s.view('empty', undefined), [{ type: 'bind', source: snap(2), options: ['rbind', 'ro'] }]);
      await s.commit('A', 'a');
      assert.deepEqual(await s.prepare('b', 'A'), [{ type: 'bind', source: snap(3), options: ['rbind', 'rw'] }]);
      assert.deepEqual(await s.view('v', 'A'), [{ type: 'bind', source: snap(1), options: ['rbind', 'ro'] }]);
      assert.deepEqual((await readdir(join(f.root, 'snapshots'))).sort(), ['1', '2', '3'], 'a view of a committed snapshot has no directory');
      await s.remove('v');
      await s.cleanup();
      assert.deepEqual((await readdir(join(f.root, 'snapshots'))).sort(), ['1', '2', '3']);
    } finally {
      await f.cleanup();
    }
  });

  test('copies a parent whole: modes, owners, hard links, symlinks, device nodes, fifos, xattrs', needsRoot, async () => {
    const f = await fresh();
    try {
      const s = f.current;
      const [m] = await s.prepare('a', undefined);
      const d = m.source;
      await writeFile(join(d, 'file'), 'data');
      await chown(join(d, 'file'), 1000, 2000);
      await chmod(join(d, 'file'), 0o4755); // after chown, which clears set-user-ID
      await link(join(d, 'file'), join(d, 'hard'));
      await symlink('file', join(d, 'sym'));
      await mkdir(join(d, 'dir'));
      await chmod(join(d, 'dir'), 0o1777);
      await run('mknod', [join(d, 'null'), 'c', '1', '3']);
      await run('mkfifo', [join(d, 'fifo')]);
      await run('python3', ['-c', `import os; os.setxattr(${JSON.stringify(join(d, 'file'))}, 'user.berth', b'kept'); os.setxattr(${JSON.stringify(join(d, 'file'))}, 'security.capability', bytes.fromhex('0000000200200000000000000000000000000000'))`]);
      await s.commit('A', 'a');
      const [c] = await s.prepare('b', 'A');
      const copy = c.source;
      const st = await lstat(join(copy, 'file'));
      assert.equal(st.mode & 0o7777, 0o4755);
      assert.deepEqual([st.uid, st.gid], [1000, 2000]);
      assert.equal(st.ino, (await lstat(join(copy, 'hard'))).ino, 'hard links stay links');
      assert.notEqual(st.ino, (await lstat(join(d, 'file'))).ino, 'a copy, not the parent');
      assert.equal(await readlink(join(copy, 'sym')), 'file');
      assert.equal((await lstat(join(copy, 'dir'))).mode & 0o7777, 0o1777);
      const dev = await lstat(join(copy, 'null'));
      assert.ok(dev.isCharacterDevice() && dev.rdev === (await lstat('/dev/null')).rdev);
      assert.ok((await lstat(join(copy, 'fifo'))).isFIFO());
      const { stdout } = await run('python3', ['-c', `import os; p=${JSON.stringify(join(copy, 'file'))}; print(os.getxattr(p, 'user.berth').decode(), os.getxattr(p, 'security.capability').hex())`]);
      assert.equal(stdout.trim(), 'kept 0000000200200000000000000000000000000000');
      assert.equal((await lstat(copy)).mode & 0o7777, 0o755);
    } finally {
      await f.cleanup();
    }
  });

  test('copyTree reports a failing copy', async () => {
    const base = await mkdtemp(join(tmpdir(), 'berth-copy-'));
    try {
      await assert.rejects(copyTree(join(base, 'missing'), base), /copying .*missing.* failed/);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  test('a missing parent is NotFound and leaves no temporary directory', async () => {
    const f = await fresh();
    try {
      await assert.rejects(f.current.prepare('x', 'missing'), { kind: 'not-found' });
      await f.current.prepare('a', undefined);
      await assert.rejects(f.current.prepare('x', 'a'), { kind: 'invalid-argument' });
      await assert.rejects(f.current.prepare('a', undefined), { kind: 'already-exists' });
      assert.deepEqual(await readdir(join(f.root, 'snapshots')), ['1']);
    } finally {
      await f.cleanup();
    }
  });
});

describe('native plugin', () => {
  test('is containerd’s native snapshotter and exports its root', async () => {
    assert.equal(nativePlugin.type, PluginType.Snapshotter);
    assert.equal(nativePlugin.id, 'native');
    assert.equal(nativePlugin.provides, Snapshotter);
    const base = await mkdtemp(join(tmpdir(), 'berth-native-plugin-'));
    const closers: Array<() => Promise<void> | void> = [];
    try {
      const exports: Record<string, string> = {};
      const root = join(base, 'io.containerd.snapshotter.v1.native');
      const s = await nativePlugin.init({
        root,
        config: { root_path: '' },
        log: { warn() {}, info() {}, error() {}, debug() {} },
        export: (k: string, v: string) => (exports[k] = v),
        onClose: (fn: () => Promise<void>) => closers.push(fn),
      } as unknown as Parameters<typeof nativePlugin.init>[0]);
      assert.ok(s instanceof NativeSnapshotter);
      assert.equal(exports.root, root);
      assert.deepEqual((await readdir(root)).sort(), ['metadata.level', 'snapshots']);
      await s.prepare('a', undefined);
      assert.equal(await readFile(join(root, 'snapshots', '1', '..', '..', 'metadata.level', 'CURRENT'), 'utf8').then(() => 'ok'), 'ok');
    } finally {
      for (const c of closers) await c();
      await rm(base, { recursive: true, force: true });
    }
  });
});
