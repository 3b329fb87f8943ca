import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  mkdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { Mount } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';
import { mknod, S_IFCHR, S_IFIFO } from '@berth/sys';
import { isRoot, layerOf, MemorySink, sha256, tempDir, treeOf } from './test-support.js';
import { TarReader } from './tar-reader.js';
import { WalkingDiffer } from './walking-differ.js';
import { lsetxattr } from '@berth/sys';

const root = { skip: !isRoot && 'needs root' };
const bind = (source: string, ro = false): Mount[] => [{ type: 'bind', source, options: ro ? ['rbind', 'ro'] : ['rbind'] }];
const T = 1_600_000_000; // whole seconds: the times a tar round trip leaves, so equal-size files must be compared by content

let work: string;
before(async () => {
  work = await tempDir();
});
after(() => rmSync(work, { recursive: true, force: true }));

let n = 0;
function dir(name: string): string {
  const d = join(work, `${name}-${++n}`);
  mkdirSync(d);
  return d;
}

function copyTree(from: string, name: string): string {
  const to = join(work, `${name}-${++n}`);
  execFileSync('cp', ['-a', from, to]);
  return to;
}

/** A tree with every kind of entry, all times whole seconds. */
function buildLower(): string {
  const d = dir('lower');
  const files: Record<string, string> = {
    'etc/passwd': 'root:x:0:0\n',
    'etc/same-size': 'aaaa',
    'etc/chmod-me': 'm',
    'etc/chown-me': 'o',
    'etc/xattr-me': 'x',
    'usr/bin/tool': 'tool',
    'usr/lib/a.so': 'lib',
    'gone/file': 'g',
    'gone/sub/file': 'g',
    'file-to-dir': 'f',
    'unchanged': 'u',
    'hl/one': 'linked',
    'opq/old': 'old',
  };
  for (const [rel, data] of Object.entries(files)) {
    mkdirSync(join(d, rel, '..'), { recursive: true });
    writeFileSync(join(d, rel), data);
  }
  mkdirSync(join(d, 'dir-to-file/inner'), { recursive: true });
  writeFileSync(join(d, 'dir-to-file/inner/x'), 'x');
  linkSync(join(d, 'hl/one'), join(d, 'hl/two'));
  symlinkSync('usr/bin', join(d, 'bin'));
  symlinkSync('passwd', join(d, 'etc/retarget'));
  chmodSync(join(d, 'usr/bin/tool'), 0o4755);
  lsetxattr(join(d, 'usr/bin/tool'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'));
  mknod(join(d, 'etc/fifo'), S_IFIFO | 0o644);
  touchAll(d);
  return d;
}

function touchAll(d: string): void {
  execFileSync('find', [d, '-exec', 'touch', '-h', '-d', `@${T}`, '{}', '+']);
}

/** The same changes, made through `root` (a plain copy, or an overlay mount). */
function modify(d: string): void {
  writeFileSync(join(d, 'etc/same-size'), 'bbbb');
  utimesSync(join(d, 'etc/same-size'), T, T); // same size, same whole-second mtime: only the content differs
  chmodSync(join(d, 'etc/chmod-me'), 0o600);
  chownSync(join(d, 'etc/chown-me'), 1000, 1000);
  lsetxattr(join(d, 'etc/xattr-me'), 'user.tag', Buffer.from([0, 1, 0xff]));
  rmSync(join(d, 'gone'), { recursive: true });
  unlinkSync(join(d, 'usr/lib/a.so'));
  unlinkSync(join(d, 'file-to-dir'));
  mkdirSync(join(d, 'file-to-dir'));
  writeFileSync(join(d, 'file-to-dir/inside'), 'in');
  rmSync(join(d, 'dir-to-file'), { recursive: true });
  writeFileSync(join(d, 'dir-to-file'), 'now a file');
  unlinkSync(join(d, 'etc/retarget'));
  symlinkSync('/etc/hostname', join(d, 'etc/retarget'));
  mkdirSync(join(d, 'new/deep'), { recursive: true });
  writeFileSync(join(d, 'new/deep/file'), Buffer.alloc(100_000, 3));
  linkSync(join(d, 'new/deep/file'), join(d, 'new/link'));
  linkSync(join(d, 'unchanged'), join(d, 'a-link-to-unchanged'));
  mknod(join(d, 'new/null'), S_IFCHR | 0o666, 1, 3);
  rmSync(join(d, 'opq'), { recursive: true });
  mkdirSync(join(d, 'opq'));
  writeFileSync(join(d, 'opq/new'), 'new');
  renameSync(join(d, 'etc/passwd'), join(d, 'etc/passwd-'));
}

async function compare(differ: WalkingDiffer, lower: Mount[], upper: Mount[], mediaType?: string) {
  const sink = new MemorySink(mediaType);
  const result = await differ.compare(lower, upper, sink);
  return { ...result, bytes: sink.bytes() };
}

async function namesOf(tar: Buffer): Promise<string[]> {
  const reader = new TarReader(layerOf(tar).open());
  const names: string[] = [];
  for (let e = await reader.next(); e; e = await reader.next()) names.push(e.type === 'hardlink' ? `${e.name} => ${e.linkname}` : e.name);
  return names;
}

describe('compare', root, () => {
  const differ = new WalkingDiffer({ tempDir: work });

  test('two directories: compare, then apply on a copy of lower, reproduces upper', async () => {
    const lower = buildLower();
    const upper = copyTree(lower, 'upper');
    modify(upper);
    const layer = await compare(differ, bind(lower, true), bind(upper, true));
    assert.equal(layer.diffId, sha256(layer.bytes));
    assert.equal(layer.size, layer.bytes.length);

    const names = await namesOf(layer.bytes);
    assert.ok(names.includes('etc/same-size'), 'equal size and mtime, different content');
    assert.ok(names.includes('.wh.gone') && !names.some((x) => x.startsWith('gone/')));
    assert.ok(names.includes('usr/lib/.wh.a.so'));
    assert.ok(!names.includes('unchanged') && !names.includes('etc/fifo'), 'unchanged entries are left out');
    assert.ok(names.includes('new/link => new/deep/file') || names.includes('new/deep/file => new/link'));
    assert.ok(names.includes('unchanged => a-link-to-unchanged'), 'an unchanged name of a new link follows it');

    const copy = copyTree(lower, 'applied');
    const applied = await differ.apply(layerOf(layer.bytes), bind(copy));
    assert.equal(applied.diffId, layer.diffId);
    assert.deepEqual(treeOf(copy, { dirTimes: true }), treeOf(upper, { dirTimes: true }));

    // Deterministic: the same trees give the same bytes; gzip wraps the same tar.
    const again = await compare(differ, bind(lower), bind(upper));
    assert.ok(again.bytes.equals(layer.bytes));
    const gz = await compare(differ, bind(lower), bind(upper), 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(gz.diffId, layer.diffId);
    assert.ok(gunzipSync(gz.bytes).equals(layer.bytes));
  });

  test('no lower mounts: the whole upper is the layer', async () => {
    const upper = buildLower();
    const layer = await compare(differ, [], bind(upper));
    const target = dir('from-empty');
    await differ.apply(layerOf(layer.bytes), bind(target));
    assert.deepEqual(treeOf(target), treeOf(upper));
  });

  test('an overlay upper: the upperdir fast path and the double walk agree with the merged view', async () => {
    const lower = buildLower();
    const base = dir('ovl');
    const [upper, wd, merged] = ['upper', 'work', 'merged'].map((d) => {
      mkdirSync(join(base, d));
      return join(base, d);
    });
    const overlay: Mount[] = [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${wd}`] }];
    mountAll(overlay, merged);
    let expected: ReturnType<typeof treeOf>;
    try {
      modify(merged);
      expected = treeOf(merged, { dirTimes: true });
    } finally {
      unmountAll(merged);
    }

    const fast = await compare(differ, bind(lower, true), overlay);
    const walked = await compare(new WalkingDiffer({ tempDir: work, overlayFastPath: false }), bind(lower, true), overlay);
    const fastNames = await namesOf(fast.bytes);
    assert.ok(fastNames.includes('opq/.wh..wh..opq'), 'an opaque upper directory is an opaque whiteout');
    assert.ok(fastNames.includes('.wh.gone'));
    for (const [what, layer] of [
      ['upperdir', fast],
      ['double walk', walked],
    ] as const) {
      const copy = copyTree(lower, 'applied');
      await differ.apply(layerOf(layer.bytes), bind(copy));
      assert.deepEqual(treeOf(copy, { dirTimes: true }), expected, what);
    }
  });
});
