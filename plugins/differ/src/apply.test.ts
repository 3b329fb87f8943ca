import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { errorKindOf, type Mount, PluginType } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';
import differPlugin from './index.js';
import { splitDev } from '@berth/sys';
import { isRoot, layerOf, sha256, tarOf, tempDir, treeOf, zstdStored } from './test-support.js';
import { WalkingDiffer } from './walking-differ.js';
import { lgetxattr, lsetxattr } from '@berth/sys';

const root = { skip: !isRoot && 'needs root' };
const bind = (source: string): Mount[] => [{ type: 'bind', source, options: ['rbind', 'rw'] }];
const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // vfs_cap_data v2, permitted cap_net_raw
const CAP_SETUID = Buffer.from('01000002c000000000000000000000000000000000', 'hex').subarray(0, 20); // bytes >= 0x80

let work: string;
before(async () => {
  work = await tempDir();
});
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function fresh(name = 'target'): string {
  const dir = join(work, `${name}-${++n}`);
  mkdirSync(dir);
  return dir;
}

test('the plugin is io.containerd.differ.v1.walking', () => {
  assert.equal(differPlugin.type, PluginType.Differ);
  assert.equal(differPlugin.id, 'walking');
});

describe('apply', root, () => {
  const differ = new WalkingDiffer();

  test('every entry type with its metadata', async () => {
    const target = fresh();
    const layer = tarOf([
      { name: 'etc/', type: 'directory', mode: 0o750, uid: 7, gid: 8, mtime: 1_100_000_000 },
      { name: 'etc/conf', data: 'hello\n', mode: 0o640, uid: 1000, gid: 1001, mtime: 1_200_000_000 },
      { name: 'bin/ping', data: 'ELF', mode: 0o4755, mtime: 1_300_000_000, xattrs: new Map([['security.capability', CAP_NET_RAW]]) },
      { name: 'bin/su', data: 'ELF2', mode: 0o755, xattrs: new Map([['security.capability', CAP_SETUID], ['user.note', Buffer.from('n')]]) },
      { name: 'etc/link', type: 'symlink', linkname: '../bin/ping', uid: 5, gid: 6, mtime: 1_400_000_000 },
      { name: 'etc/hard', type: 'hardlink', linkname: 'etc/conf' },
      { name: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
      { name: 'run/fifo', type: 'fifo', mode: 0o620 },
      { name: 'big', data: Buffer.alloc(300_000, 7) },
      { name: `${'long/'.repeat(30)}name-with-ünïcode`, data: 'deep' },
    ]);
    const result = await differ.apply(layerOf(layer), bind(target));
    assert.equal(result.diffId, sha256(layer));
    assert.equal(result.size, layer.length);

    const etc = statSync(join(target, 'etc'));
    assert.equal(etc.mode & 0o7777, 0o750);
    assert.deepEqual([etc.uid, etc.gid, etc.mtimeMs / 1000], [7, 8, 1_100_000_000]);
    const conf = lstatSync(join(target, 'etc/conf'));
    assert.deepEqual([conf.mode & 0o7777, conf.uid, conf.gid, conf.mtimeMs / 1000, conf.nlink], [0o640, 1000, 1001, 1_200_000_000, 2]);
    assert.equal(readFileSync(join(target, 'etc/hard'), 'utf8'), 'hello\n');
    assert.equal(lstatSync(join(target, 'etc/hard')).ino, conf.ino);
    const ping = lstatSync(join(target, 'bin/ping'));
    assert.equal(ping.mode & 0o7777, 0o4755, 'setuid survives chown');
    assert.deepEqual(lgetxattr(join(target, 'bin/ping'), 'security.capability'), CAP_NET_RAW);
    assert.deepEqual(lgetxattr(join(target, 'bin/su'), 'security.capability'), CAP_SETUID, 'binary xattr bytes intact');
    assert.equal(lgetxattr(join(target, 'bin/su'), 'user.note')?.toString(), 'n');
    const link = lstatSync(join(target, 'etc/link'));
    assert.ok(link.isSymbolicLink());
    assert.equal(readlinkSync(join(target, 'etc/link')), '../bin/ping');
    assert.deepEqual([link.uid, link.gid, link.mtimeMs / 1000], [5, 6, 1_400_000_000]);
    const nul = lstatSync(join(target, 'dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.deepEqual(splitDev(nul.rdev), { major: 1, minor: 3 });
    assert.equal(nul.mode & 0o7777, 0o666);
    const sda = lstatSync(join(target, 'dev/sda'));
    assert.ok(sda.isBlockDevice());
    assert.deepEqual([splitDev(sda.rdev).major, sda.gid], [8, 6]);
    assert.ok(lstatSync(join(target, 'run/fifo')).isFIFO());
    assert.equal(lstatSync(join(target, 'run/fifo')).mode & 0o7777, 0o620);
    assert.equal(statSync(join(target, 'big')).size, 300_000);
    assert.equal(readFileSync(join(target, `${'long/'.repeat(30)}name-with-ünïcode`), 'utf8'), 'deep');
    // Parents that the layer never named get 0755.
    assert.equal(statSync(join(target, 'bin')).mode & 0o7777, 0o755);
  });

  test('later entries replace earlier ones; directories keep their contents', async () => {
    const target = fresh();
    mkdirSync(join(target, 'd/sub'), { recursive: true });
    writeFileSync(join(target, 'd/sub/keep'), 'k');
    writeFileSync(join(target, 'f'), 'old');
    const layer = tarOf([
      { name: 'd/', type: 'directory', mode: 0o700 },
      { name: 'f/', type: 'directory' }, // a directory replaces a file
      { name: 'f/x', data: 'x' },
      { name: 'd/sub', data: 'now a file' }, // a file replaces a directory
      { name: 'l', type: 'symlink', linkname: 'f' },
      { name: 'l', data: 'file over symlink' }, // not written through the link
      { name: 'twice', data: 'one' },
      { name: 'twice', data: 'two' },
    ]);
    await differ.apply(layerOf(layer), bind(target));
    assert.equal(statSync(join(target, 'd')).mode & 0o7777, 0o700);
    assert.equal(readFileSync(join(target, 'd/sub'), 'utf8'), 'now a file');
    assert.equal(readFileSync(join(target, 'f/x'), 'utf8'), 'x');
    assert.ok(lstatSync(join(target, 'l')).isFile());
    assert.equal(readFileSync(join(target, 'twice'), 'utf8'), 'two');
  });

  test('directory times are set after their children', async () => {
    const target = fresh();
    const layer = tarOf([
      { name: 'a/', type: 'directory', mtime: 1_000 },
      { name: 'a/b/', type: 'directory', mtime: 2_000 },
      { name: 'a/b/c', data: 'c', mtime: 3_000 },
      { name: 'a/d', data: 'd' },
    ]);
    await differ.apply(layerOf(layer), bind(target));
    assert.equal(statSync(join(target, 'a')).mtimeMs, 1_000_000);
    assert.equal(statSync(join(target, 'a/b')).mtimeMs, 2_000_000);
    assert.equal(statSync(join(target, 'a/b/c')).mtimeMs, 3_000_000);
  });

  test('whiteouts and opaque directories on a plain directory', async () => {
    const target = fresh();
    for (const d of ['gone', 'opq/old', 'keep']) mkdirSync(join(target, d), { recursive: true });
    writeFileSync(join(target, 'gone/x'), 'x');
    writeFileSync(join(target, 'opq/old/y'), 'y');
    writeFileSync(join(target, 'opq/z'), 'z');
    writeFileSync(join(target, 'keep/file'), 'f');
    writeFileSync(join(target, 'keep/other'), 'o');
    const layer = tarOf([
      { name: 'opq/', type: 'directory' },
      { name: 'opq/new', data: 'new' },
      { name: 'opq/.wh..wh..opq' },
      { name: 'opq/after/', type: 'directory' },
      { name: '.wh.gone' },
      { name: 'keep/.wh.file' },
      { name: '.wh.never-existed' },
      { name: 'nodir/.wh.x' },
    ]);
    await differ.apply(layerOf(layer), bind(target));
    assert.deepEqual(Object.keys(treeOf(target)).sort(), ['keep', 'keep/other', 'opq', 'opq/after', 'opq/new']);
  });

  test('gzip and zstd layers; the diff ID is the sha256 of the uncompressed tar', async () => {
    const tar = tarOf([
      { name: 'a', data: 'alpha'.repeat(1000) },
      { name: 'b/', type: 'directory' },
      { name: 'b/c', data: Buffer.alloc(200_000, 1) },
    ]);
    const variants: [string, Buffer, string][] = [
      ['gzip', gzipSync(tar), 'application/vnd.oci.image.layer.v1.tar+gzip'],
      ['docker gzip', gzipSync(tar), 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
      ['zstd (stored blocks)', zstdStored(tar), 'application/vnd.oci.image.layer.v1.tar+zstd'],
      ['gzip labelled tar (sniffed)', gzipSync(tar), 'application/vnd.docker.image.rootfs.diff.tar'],
      ['zstd labelled octet-stream (sniffed)', zstdStored(tar), 'application/octet-stream'],
    ];
    if (hasZstdCli()) {
      variants.push(['zstd (zstd -19)', execFileSync('zstd', ['-19', '-c', '-q'], { input: tar }), 'application/vnd.oci.image.layer.v1.tar+zstd']);
    }
    for (const [what, bytes, mediaType] of variants) {
      const target = fresh();
      const result = await differ.apply(layerOf(bytes, mediaType), bind(target));
      assert.equal(result.diffId, sha256(tar), what);
      assert.equal(result.size, tar.length, what);
      assert.equal(readFileSync(join(target, 'a'), 'utf8'), 'alpha'.repeat(1000), what);
      assert.equal(statSync(join(target, 'b/c')).size, 200_000, what);
    }
  });

  test('large layers are hashed on a worker thread: same diff ID, the source bytes untouched', async () => {
    const tar = tarOf([
      { name: 'a', data: randomBytes(3 << 20) },
      { name: 'b', data: randomBytes(1000) },
    ]);
    const before = sha256(tar);
    for (const [what, bytes, mediaType] of [
      ['tar', tar, undefined],
      ['gzip', gzipSync(tar), 'application/vnd.oci.image.layer.v1.tar+gzip'],
    ] as const) {
      const target = fresh();
      const result = await differ.apply(layerOf(bytes, mediaType, 65536), bind(target));
      assert.equal(result.diffId, before, what);
      assert.equal(sha256(tar), before, `${what}: the layer's buffers were not handed away`);
      assert.ok(readFileSync(join(target, 'a')).equals(tar.subarray(512, 512 + (3 << 20))), what);
    }
  });

  test('data after the end-of-archive marker counts in the diff ID', async () => {
    const tar = Buffer.concat([tarOf([{ name: 'a', data: 'a' }]), Buffer.alloc(10_240)]);
    const result = await differ.apply(layerOf(tar), bind(fresh()));
    assert.equal(result.diffId, sha256(tar));
  });

  test('unsupported media types and encrypted layers are NotImplemented', async () => {
    const tar = tarOf([{ name: 'a', data: 'a' }]);
    for (const mt of ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', 'application/vnd.oci.image.config.v1+json']) {
      await assert.rejects(differ.apply(layerOf(tar, mt), bind(fresh())), (err) => errorKindOf(err) === 'not-implemented');
    }
  });

  test('several mounts are mounted on a temporary directory and unmounted after', async () => {
    const lower = fresh('lower');
    const top = fresh('top');
    writeFileSync(join(lower, 'below'), 'b');
    const mounts: Mount[] = [
      { type: 'bind', source: lower, options: ['bind'] },
      { type: 'bind', source: top, options: ['bind'] },
    ];
    const tmp = fresh('tmpmounts');
    await new WalkingDiffer({ tempDir: tmp }).apply(layerOf(tarOf([{ name: 'x', data: 'via mount' }])), mounts);
    assert.equal(readFileSync(join(top, 'x'), 'utf8'), 'via mount');
    assert.ok(!existsSync(join(lower, 'x')));
    assert.deepEqual(execFileSync('ls', ['-A', tmp]).toString(), '', 'temporary mount point removed');
  });

  test('cancel and source failures stop the apply and release the source', async () => {
    // Incompressible, so that the gzip layer too comes in many chunks.
    const tar = tarOf(Array.from({ length: 50 }, (_, i) => ({ name: `f${i}`, data: randomBytes(10_000) })));
    for (const compress of [false, true]) {
      const bytes = compress ? gzipSync(tar) : tar;
      const controller = new AbortController();
      let released = false;
      let sent = 0;
      const layer = {
        ...layerOf(bytes),
        async *open() {
          try {
            for (let i = 0; i < bytes.length; i += 4096) {
              if (++sent === 3) controller.abort();
              yield bytes.subarray(i, i + 4096);
              await new Promise((r) => setImmediate(r));
            }
          } finally {
            released = true;
          }
        },
      };
      await assert.rejects(differ.apply(layer, bind(fresh()), controller.signal), (err) => errorKindOf(err) === 'canceled');
      assert.ok(released, 'the source was closed');
      await assert.rejects(differ.apply(layerOf(bytes), bind(fresh()), AbortSignal.abort()), (err) => errorKindOf(err) === 'canceled');

      const failing = {
        ...layerOf(bytes),
        async *open() {
          yield bytes.subarray(0, 20_000);
          throw new Error('disk on fire');
        },
      };
      await assert.rejects(differ.apply(failing, bind(fresh())), /disk on fire/);
    }
  });

  test('a read-only mount is refused', async () => {
    const target = fresh();
    await assert.rejects(
      differ.apply(layerOf(tarOf([{ name: 'x', data: 'x' }])), [{ type: 'bind', source: target, options: ['rbind', 'ro'] }]),
      (err) => errorKindOf(err) === 'invalid-argument',
    );
  });
});

describe('apply to an overlay upper', root, () => {
  const differ = new WalkingDiffer();

  function overlayOf(lowers: string[], upper: string, workdir: string): Mount[] {
    return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`, `upperdir=${upper}`, `workdir=${workdir}`] }];
  }

  test('whiteouts become overlay whiteouts; the merged view hides the lower files', async () => {
    const base = fresh('ovl');
    const [l1, l2, upper, wd, merged] = ['l1', 'l2', 'upper', 'work', 'merged'].map((d) => {
      mkdirSync(join(base, d));
      return join(base, d);
    });
    // l2 is the bottom layer, l1 above it.
    mkdirSync(join(l2, 'etc/opq/deep'), { recursive: true });
    writeFileSync(join(l2, 'etc/passwd'), 'root');
    writeFileSync(join(l2, 'etc/opq/deep/f'), 'f');
    writeFileSync(join(l2, 'etc/opq/g'), 'g');
    mkdirSync(join(l2, 'usr/bin'), { recursive: true });
    writeFileSync(join(l2, 'usr/bin/sh'), 'sh');
    symlinkSync('usr/bin', join(l2, 'bin')); // usr-merge: /bin -> usr/bin in a lower layer
    mkdirSync(join(l1, 'var/log'), { recursive: true });
    writeFileSync(join(l1, 'var/log/old'), 'old');
    execFileSync('chown', ['123:456', join(l1, 'var/log')]);
    execFileSync('chmod', ['0701', join(l1, 'var/log')]);
    const mounts = overlayOf([l1, l2], upper, wd);

    const layer = tarOf([
      { name: 'etc/.wh.passwd' },
      { name: 'etc/opq/.wh..wh..opq' },
      { name: 'etc/opq/new', data: 'n' },
      { name: 'var/log/.wh.old' },
      { name: 'var/log/new', data: 'n' },
      { name: 'bin/tool', data: 'through the lower symlink' },
      { name: '.wh.nothing-here' },
    ]);
    const result = await differ.apply(layerOf(layer), mounts);
    assert.equal(result.diffId, sha256(layer));

    // In the upper: whiteouts are 0/0 char devices, the opaque dir carries the xattr, copied-up parents keep lower metadata.
    const wh = lstatSync(join(upper, 'etc/passwd'));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0);
    assert.equal(lgetxattr(join(upper, 'etc/opq'), 'trusted.overlay.opaque')?.toString(), 'y');
    const log = lstatSync(join(upper, 'var/log'));
    assert.deepEqual([log.uid, log.gid, log.mode & 0o7777], [123, 456, 0o701]);
    assert.ok(!existsSync(join(upper, 'nothing-here')), 'no whiteout where nothing is below');
    assert.equal(readFileSync(join(upper, 'usr/bin/tool'), 'utf8'), 'through the lower symlink');
    assert.ok(!existsSync(join(upper, 'bin')), 'the lower /bin symlink still shows');

    mountAll(mounts, merged);
    try {
      const view = treeOf(merged);
      assert.ok(!('etc/passwd' in view));
      assert.deepEqual(
        Object.keys(view).filter((k) => k.startsWith('etc/opq')),
        ['etc/opq', 'etc/opq/new'],
      );
      assert.ok(!('var/log/old' in view));
      assert.ok('var/log/new' in view);
      assert.equal(readFileSync(join(merged, 'bin/tool'), 'utf8'), 'through the lower symlink');
      assert.equal(readFileSync(join(merged, 'bin/sh'), 'utf8'), 'sh');
    } finally {
      unmountAll(merged);
    }
  });

  test('a directory re-created after its whiteout in the same layer is opaque', async () => {
    const base = fresh('ovl');
    const [lower, upper, wd, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => {
      mkdirSync(join(base, d));
      return join(base, d);
    });
    mkdirSync(join(lower, 'd'));
    writeFileSync(join(lower, 'd/old'), 'old');
    const mounts = overlayOf([lower], upper, wd);
    await differ.apply(layerOf(tarOf([{ name: '.wh.d' }, { name: 'd/', type: 'directory' }, { name: 'd/new', data: 'new' }])), mounts);
    mountAll(mounts, merged);
    try {
      assert.deepEqual(Object.keys(treeOf(merged)), ['d', 'd/new']);
    } finally {
      unmountAll(merged);
    }
  });

  test('overlay attributes in a layer are not applied', async () => {
    const base = fresh('ovl');
    const [lower, upper, wd] = ['lower', 'upper', 'work'].map((d) => {
      mkdirSync(join(base, d));
      return join(base, d);
    });
    mkdirSync(join(lower, 'd'));
    lsetxattr(join(lower, 'd'), 'user.keep', Buffer.from('1'));
    const layer = tarOf([
      { name: 'd/', type: 'directory', xattrs: new Map([['trusted.overlay.opaque', Buffer.from('y')], ['trusted.overlay.redirect', Buffer.from('/etc')]]) },
    ]);
    await differ.apply(layerOf(layer), overlayOf([lower], upper, wd));
    assert.equal(lgetxattr(join(upper, 'd'), 'trusted.overlay.opaque'), undefined);
    assert.equal(lgetxattr(join(upper, 'd'), 'trusted.overlay.redirect'), undefined);
  });
});

function hasZstdCli(): boolean {
  try {
    execFileSync('zstd', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
