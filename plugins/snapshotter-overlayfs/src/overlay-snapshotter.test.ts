import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { snapshotterSuite } from '@berth/compliance';
import { errorKindOf, type Mount, PluginType, SkipPlugin, Snapshotter } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';
import overlayPlugin, { LowerdirLinks, MOUNT_DATA_MAX, OverlaySnapshotter, overlayUnsupportedReason } from './index.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
async function probe(): Promise<string | undefined> {
  if (!isRoot) return 'needs root';
  const dir = await mkdtemp(join(tmpdir(), 'berth-ovl-probe-'));
  try {
    return await overlayUnsupportedReason(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
const unsupported = await probe();
const skip = { skip: unsupported ?? false };

/** A snapshotter on a fresh root, with its link directory short and private to the test. */
async function fresh(options: { linkDir?: string } = {}) {
  const base = await mkdtemp(join(tmpdir(), 'berth-ovl-'));
  const root = join(base, 'root');
  const linkDir = options.linkDir ?? (await mkdtemp('/tmp/bo-'));
  let current = await OverlaySnapshotter.open(root, { linkDir });
  return {
    root,
    linkDir,
    get current() {
      return current;
    },
    async reopen() {
      await current.close();
      current = await OverlaySnapshotter.open(root, { linkDir });
      return current;
    },
    async cleanup() {
      await current.close();
      await rm(base, { recursive: true, force: true });
      if (linkDir) await rm(linkDir, { recursive: true, force: true });
    },
  };
}

if (!unsupported) {
  snapshotterSuite(
    'overlayfs',
    async () => {
      const f = await fresh();
      return {
        snapshotter: f.current,
        reopen: () => f.reopen(),
        async crashLeftovers() {
          const snapshots = join(f.root, 'snapshots');
          const planted = [join(snapshots, '999999'), join(snapshots, 'new-crashed'), join(snapshots, 'rm-5-deadbeef')];
          for (const p of planted) {
            await mkdir(join(p, 'fs', 'sub'), { recursive: true });
            await writeFile(join(p, 'fs', 'sub', 'file'), 'left over');
            await mkdir(join(p, 'work', 'work'), { recursive: true, mode: 0 });
          }
          return planted;
        },
        cleanup: () => f.cleanup(),
      };
    },
    { mount: (mounts, target) => mountAll(mounts, target), unmount: (target) => unmountAll(target) },
  );
}

/** Build a committed chain of `depth` layers, each adding one file; returns the top's name. */
async function chain(s: OverlaySnapshotter, depth: number, prefix = 'c'): Promise<string> {
  let parent: string | undefined;
  for (let i = 0; i < depth; i++) {
    const mounts = await s.prepare(`${prefix}-${i}-a`, parent);
    const upper = i === 0 ? mounts[0].source : (option(mounts[0], 'upperdir') as string);
    await writeFile(join(upper, `layer-${i}`), String(i));
    parent = `${prefix}-${i}`;
    await s.commit(parent, `${prefix}-${i}-a`);
  }
  return parent as string;
}

function option(m: Mount, name: string): string | undefined {
  return m.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
}

describe('OverlaySnapshotter mounts', skip, () => {
  test('are containerd 1.6’s, option for option', async () => {
    const f = await fresh();
    try {
      const s = f.current;
      const snap = (id: number) => join(f.root, 'snapshots', String(id));
      assert.deepEqual(await s.prepare('base-a', undefined), [{ type: 'bind', source: `${snap(1)}/fs`, options: ['rw', 'rbind'] }]);
      assert.deepEqual(await s.view('empty-view', undefined), [{ type: 'bind', source: `${snap(2)}/fs`, options: ['ro', 'rbind'] }]);
      await s.commit('base', 'base-a');
      assert.deepEqual(await s.view('view-1', 'base'), [{ type: 'bind', source: `${snap(1)}/fs`, options: ['ro', 'rbind'] }]);
      assert.deepEqual(await s.prepare('top-a', 'base'), [
        {
          type: 'overlay',
          source: 'overlay',
          options: ['index=off', `workdir=${snap(4)}/work`, `upperdir=${snap(4)}/fs`, `lowerdir=${snap(1)}/fs`],
        },
      ]);
      await s.commit('top', 'top-a');
      assert.deepEqual(await s.view('view-2', 'top'), [
        { type: 'overlay', source: 'overlay', options: ['index=off', `lowerdir=${snap(4)}/fs:${snap(1)}/fs`] },
      ]);
      assert.deepEqual((await readdir(join(f.root, 'snapshots'))).sort(), ['1', '2', '3', '4', '5']);
      assert.deepEqual((await readdir(snap(5))).sort(), ['fs'], 'a view has no work directory');
      assert.deepEqual(await readdir(f.linkDir), [], 'short chains need no links');
    } finally {
      await f.cleanup();
    }
  });

  test('go through short links past 3584 bytes, stay under one page at 128 layers, and mount(8) takes them', async () => {
    const f = await fresh();
    const target = await mkdtemp(join(tmpdir(), 'berth-ovl-target-'));
    try {
      const s = f.current;
      const top = await chain(s, 128);
      const [m] = await s.view('deep-view', top);
      const data = m.options.join(',');
      assert.ok(Buffer.byteLength(data) <= MOUNT_DATA_MAX, `${Buffer.byteLength(data)} bytes`);
      const lowers = (option(m, 'lowerdir') as string).split(':');
      assert.equal(lowers.length, 128);
      assert.equal(lowers[0], join(f.linkDir, (128).toString(36)), 'the nearest parent first, named by its id in base 36');
      assert.ok(lowers.every((l) => l.startsWith(`${f.linkDir}/`)));
      assert.equal(await readlink(lowers[127]), join(f.root, 'snapshots', '1', 'fs'), 'the last lowerdir is the base');

      // Exactly as `ctr snapshots mounts` prints it: mount -t <type> <source> <target> -o <options>.
      await run('mount', ['-t', m.type, m.source, target, '-o', data]);
      try {
        assert.equal(await readFile(join(target, 'layer-0'), 'utf8'), '0', 'the bottom layer, read through the top');
        assert.equal((await readdir(target)).length, 128);
      } finally {
        await run('umount', [target]);
      }

      // An active snapshot on the chain, through @berth/sys as a shim would.
      const active = await s.prepare('deep-active', top);
      mountAll(active, target);
      try {
        await writeFile(join(target, 'top'), 'written');
        assert.equal(await readFile(join(target, 'layer-127'), 'utf8'), '127');
      } finally {
        unmountAll(target);
      }
      assert.equal(await readFile(join(option(active[0], 'upperdir') as string, 'top'), 'utf8'), 'written');
    } finally {
      await rm(target, { recursive: true, force: true });
      await f.cleanup();
    }
  });

  test('without links, a chain too long for one page is refused at prepare and nothing is recorded', async () => {
    const f = await fresh();
    let s: OverlaySnapshotter | undefined;
    try {
      const top = await chain(f.current, 128);
      await f.current.close();
      s = await OverlaySnapshotter.open(f.root, { linkDir: '' });
      const names = async () => {
        const out: string[] = [];
        await s?.walk((i) => void out.push(i.name));
        return out.length;
      };
      const before = await names();
      await assert.rejects(s.prepare('too-long', top), (err: Error) => {
        assert.equal(errorKindOf(err), 'failed-precondition');
        assert.match(err.message, /129 layers|128 layers/);
        assert.match(err.message, /more than mount\(2\) accepts \(4095\)/);
        return true;
      });
      assert.equal(await names(), before);
      assert.ok(!(await readdir(join(f.root, 'snapshots'))).some((n) => n.startsWith('new-')), 'no temporary directory left');
    } finally {
      await s?.close();
      await f.cleanup();
    }
  });

  test('links of removed snapshots go at remove and at cleanup', async () => {
    const f = await fresh();
    try {
      const s = f.current;
      const top = await chain(s, 100, 'l');
      await s.view('v', top);
      assert.equal((await readdir(f.linkDir)).filter((n) => n !== '.root').length, 100);
      await s.remove('v');
      await s.remove(top);
      assert.equal((await readdir(f.linkDir)).filter((n) => n !== '.root').length, 99);
      await writeFile(join(f.linkDir, 'zzzz'), '');
      await s.cleanup();
      assert.ok(!(await readdir(f.linkDir)).includes('zzzz'));
    } finally {
      await f.cleanup();
    }
  });
});

describe('LowerdirLinks', () => {
  test('claims a directory per root and passes over one a live root holds', async () => {
    const base = await mkdtemp('/tmp/bl-');
    const roots = await mkdtemp(join(tmpdir(), 'berth-links-'));
    try {
      const rootA = join(roots, 'a');
      const rootB = join(roots, 'b');
      await mkdir(rootA);
      await mkdir(rootB);
      const b = new LowerdirLinks(rootB, undefined, base);
      // Another live root holds b's first choice.
      const [first, second] = b.candidates();
      await mkdir(first);
      const { symlink } = await import('node:fs/promises');
      await symlink(rootA, join(first, '.root'));
      const [l] = await b.ensure(['35']);
      assert.equal(l, join(second, 'z'), 'the next candidate, the id in base 36');
      assert.equal(await readlink(join(second, '.root')), rootB);
      assert.equal(await readlink(l), join(rootB, 'snapshots', '35', 'fs'));

      // A holder that no longer exists gives its directory up, stale links and all.
      await rm(rootA, { recursive: true });
      await symlink('/nowhere', join(first, '1'));
      const c = new LowerdirLinks(rootB, undefined, base);
      assert.deepEqual(await c.ensure(['1']), [join(first, '1')]);
      assert.equal(await readlink(join(first, '1')), join(rootB, 'snapshots', '1', 'fs'));

      // An exact directory with files of its own is not taken over.
      const foreign = join(base, 'foreign');
      await mkdir(foreign);
      await writeFile(join(foreign, 'precious'), 'x');
      await assert.rejects(new LowerdirLinks(rootB, foreign).ensure(['1']), (err: Error) => errorKindOf(err) === 'failed-precondition');
      assert.equal(await readFile(join(foreign, 'precious'), 'utf8'), 'x');
    } finally {
      await rm(base, { recursive: true, force: true });
      await rm(roots, { recursive: true, force: true });
    }
  });
});

describe('overlayfs plugin', () => {
  const init = (ctx: object) => overlayPlugin.init(ctx as unknown as Parameters<typeof overlayPlugin.init>[0]);
  const logger = { warn() {}, info() {}, error() {}, debug() {} };

  test('is containerd’s overlayfs snapshotter and exports its root', skip, async () => {
    assert.equal(overlayPlugin.type, PluginType.Snapshotter);
    assert.equal(overlayPlugin.id, 'overlayfs');
    assert.equal(overlayPlugin.provides, Snapshotter);
    const base = await mkdtemp(join(tmpdir(), 'berth-ovl-plugin-'));
    const closers: Array<() => Promise<void> | void> = [];
    try {
      const exports: Record<string, string> = {};
      const root = join(base, 'io.containerd.snapshotter.v1.overlayfs');
      const s = await init({
        root,
        config: { root_path: '', link_dir: '', short_lowerdirs: true },
        log: logger,
        export: (k: string, v: string) => (exports[k] = v),
        onClose: (fn: () => Promise<void>) => closers.push(fn),
      });
      assert.ok(s instanceof OverlaySnapshotter);
      assert.equal(exports.root, root);
      assert.deepEqual((await readdir(root)).sort(), ['metadata.level', 'snapshots'], 'the support check left nothing behind');
    } finally {
      for (const c of closers) await c();
      await rm(base, { recursive: true, force: true });
    }
  });

  test('skips itself where overlayfs cannot mount on the root', skip, async () => {
    // overlayfs refuses an upper directory on overlayfs: put the root inside an overlay mount.
    const base = await mkdtemp(join(tmpdir(), 'berth-ovl-skip-'));
    const p = (d: string) => join(base, d);
    for (const d of ['lower', 'upper', 'work', 'merged']) await mkdir(p(d));
    mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${p('lower')}`, `upperdir=${p('upper')}`, `workdir=${p('work')}`] }], p('merged'));
    try {
      const reason = await overlayUnsupportedReason(join(p('merged'), 'root'));
      if (reason === undefined) return; // this kernel stacks overlays as upper; nothing to check here
      await assert.rejects(
        Promise.resolve().then(() => init({ root: join(p('merged'), 'root'), config: { root_path: '', link_dir: '', short_lowerdirs: true }, log: logger, export() {}, onClose() {} })),
        (err: Error) => err instanceof SkipPlugin && /skip plugin: overlayfs cannot be mounted/.test(err.message),
      );
      assert.deepEqual(await readdir(join(p('merged'), 'root')), [], 'the check cleaned up after itself');
    } finally {
      unmountAll(p('merged'));
      await rm(base, { recursive: true, force: true });
    }
  });

  test('an empty layer prepares and commits', skip, async () => {
    const f = await fresh();
    try {
      await f.current.prepare('e', undefined);
      await f.current.commit('E', 'e');
      assert.deepEqual(await f.current.usage('E'), { size: (await lstat(join(f.root, 'snapshots', '1', 'fs'))).blocks * 512, inodes: 1 });
    } finally {
      await f.cleanup();
    }
  });
});

/** Run by a child: argv = [module, root, linkDir]. Builds, commits and removes snapshots until killed. */
const churn = `
const [mod, root, linkDir] = process.argv.slice(1);
const { OverlaySnapshotter } = await import(mod);
const { writeFile } = await import('node:fs/promises');
const s = await OverlaySnapshotter.open(root, { linkDir });
process.stdout.write('ready\\n');
let parent;
for (let i = 0; ; i++) {
  const key = 'churn-' + process.pid + '-' + i;
  const m = await s.prepare(key, parent);
  const upper = m[0].type === 'bind' ? m[0].source : m[0].options.find((o) => o.startsWith('upperdir=')).slice(9);
  await writeFile(upper + '/f' + i, String(i));
  if (i % 3 === 2) { await s.remove(key); continue; }
  await s.commit(key + '-c', key);
  if (i % 5 === 4) await s.view(key + '-v', key + '-c');
  parent = key + '-c';
}
`;

describe('OverlaySnapshotter after a crash', skip, () => {
  test('killed mid-operation, it reopens consistent and cleanup leaves exactly the snapshots', async () => {
    const f = await fresh();
    try {
      await f.current.close();
      const mod = new URL('./overlay-snapshotter.js', import.meta.url).href;
      const { spawn } = await import('node:child_process');
      for (const delay of [150, 300, 450]) {
        const child = spawn(process.execPath, ['--input-type=module', '-e', churn, mod, f.root, f.linkDir], { stdio: ['ignore', 'pipe', 'inherit'] });
        await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
        await new Promise((r) => setTimeout(r, delay));
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
      const s = await f.reopen();
      await s.cleanup();
      const infos: Array<{ name: string; kind: string }> = [];
      await s.walk((i) => void infos.push(i));
      assert.ok(infos.length > 3, `the children got somewhere (${infos.length} snapshots)`);
      const dirs = (await readdir(join(f.root, 'snapshots'))).sort();
      for (const i of infos) await s.usage(i.name);
      assert.equal(dirs.length, infos.length, `one directory per snapshot, nothing else: ${dirs.join(' ')}`);
      for (const d of dirs) assert.match(d, /^\d+$/);
      const target = await mkdtemp(join(tmpdir(), 'berth-ovl-crash-'));
      try {
        for (const info of infos.filter((i) => i.kind !== 'committed')) {
          mountAll(await s.mounts(info.name), target);
          unmountAll(target);
        }
        for (const info of infos.filter((i) => i.kind === 'committed')) {
          await s.view(`${info.name}-check`, info.name);
          mountAll(await s.mounts(`${info.name}-check`), target);
          try {
            assert.ok((await readdir(target)).length > 0, `${info.name} shows its files`);
          } finally {
            unmountAll(target);
          }
        }
      } finally {
        await rm(target, { recursive: true, force: true });
      }
    } finally {
      await f.cleanup();
    }
  });
});
