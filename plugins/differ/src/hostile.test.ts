import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { errorKindOf, type Mount } from '@berth/plugin-api';
import { isRoot, layerOf, type TestEntry, tarOf, tempDir, treeOf } from './test-support.js';
import { WalkingDiffer } from './walking-differ.js';

/**
 * Layers built to escape the target. The target sits in a "world" directory
 * next to a sentinel tree (and, for overlays, the lower layers); after every
 * apply — successful or not — everything in the world but the target must
 * be exactly as before.
 */

const root = { skip: !isRoot && 'needs root' };
const bind = (source: string): Mount[] => [{ type: 'bind', source, options: ['rbind'] }];

let world: string;
let sentinel: string;
let worldBefore: string[];
let n = 0;
const hostFiles = ['/etc/passwd', '/etc/shadow', '/etc/hostname'].filter((f) => existsSync(f));
const hostBefore = hostState();

function hostState(): string {
  return hostFiles
    .map((f) => {
      const st = lstatSync(f);
      return `${f}:${st.nlink}:${st.mode}:${st.mtimeMs}:${createHash('sha256').update(readFileSync(f)).digest('hex')}`;
    })
    .join('\n');
}

/** One line per entry of the world but the targets, times to the nanosecond. */
function worldState(): string[] {
  return Object.entries(treeOf(world, { dirTimes: true, skip: (rel) => rel === 'targets' })).map(
    ([k, v]) => `${k} ${JSON.stringify(v)} ${lstatSync(join(world, k), { bigint: true }).mtimeNs}`,
  );
}

function freshTarget(): string {
  const t = join(world, 'targets', `t-${++n}`);
  mkdirSync(t);
  return t;
}

function assertWorldIntact(what: string): void {
  const now = worldState();
  const changed = [...now.filter((l) => !worldBefore.includes(l)), ...worldBefore.filter((l) => !now.includes(l)).map((l) => `gone: ${l}`)];
  assert.deepEqual(changed, [], `${what}: something outside the target changed`);
}

before(async () => {
  world = await tempDir('berth-differ-world-');
  sentinel = join(world, 'sentinel');
  mkdirSync(join(sentinel, 'dir'), { recursive: true });
  writeFileSync(join(sentinel, 'file'), 'precious');
  writeFileSync(join(sentinel, 'dir', 'secret'), 'secret');
  symlinkSync('/etc', join(sentinel, 'etc-link'));
  // Lower layers for the overlay cases live in the world too: applying to an upper must not touch them.
  const lower = join(world, 'lower');
  mkdirSync(join(lower, 'usr'), { recursive: true });
  symlinkSync('/', join(lower, 'rootlink'));
  symlinkSync(sentinel, join(lower, 'abs-sentinel'));
  symlinkSync('../../../../../../../..', join(lower, 'up'));
  writeFileSync(join(lower, 'usr', 'file'), 'lower');
  mkdirSync(join(world, 'work'));
  mkdirSync(join(world, 'targets'));
  worldBefore = worldState();
});
after(() => {
  assert.equal(hostState(), hostBefore, 'host files changed');
  rmSync(world, { recursive: true, force: true });
});

async function applyExpect(
  entries: TestEntry[] | Buffer,
  expect: 'ok' | 'invalid-argument' | 'not-implemented',
  opts: { target?: string; differ?: WalkingDiffer; mediaType?: string; mounts?: Mount[] } = {},
): Promise<string> {
  const target = opts.target ?? freshTarget();
  const bytes = Buffer.isBuffer(entries) ? entries : tarOf(entries);
  const differ = opts.differ ?? new WalkingDiffer();
  const run = differ.apply(layerOf(bytes, opts.mediaType), opts.mounts ?? bind(target));
  if (expect === 'ok') await run;
  else await assert.rejects(run, (err) => errorKindOf(err) === expect || assert.fail(`got ${errorKindOf(err)}: ${(err as Error).message}`));
  return target;
}

describe('hostile layers', root, () => {
  test('../ names are refused', async () => {
    await applyExpect([{ name: '../sentinel/pwned', data: 'x' }], 'invalid-argument');
    await applyExpect([{ name: 'a/../../sentinel/pwned', data: 'x' }], 'invalid-argument');
    await applyExpect([{ name: './../../../../../../../../tmp/pwned', data: 'x' }], 'invalid-argument');
    await applyExpect([{ name: '/../sentinel/pwned', data: 'x' }], 'invalid-argument');
    assertWorldIntact('../ names');
  });

  test('absolute names land inside the target', async () => {
    const t = await applyExpect([{ name: '/etc/passwd', data: 'root::0:0::/:/bin/sh\n' }, { name: `${sentinel}/file`, data: 'x' }], 'ok');
    assert.equal(readFileSync(join(t, 'etc/passwd'), 'utf8'), 'root::0:0::/:/bin/sh\n');
    assert.equal(readFileSync(join(t, sentinel, 'file'), 'utf8'), 'x');
    assertWorldIntact('absolute names');
  });

  test('symlink a -> / then a/etc/x writes into the target', async () => {
    const t = await applyExpect(
      [
        { name: 'a', type: 'symlink', linkname: '/' },
        { name: 'a/etc/x', data: 'x' },
        { name: 's', type: 'symlink', linkname: sentinel },
        { name: 's/pwned', data: 'x' },
        { name: 's/dir/', type: 'directory', mode: 0o777 },
      ],
      'ok',
    );
    assert.equal(readlinkSync(join(t, 'a')), '/');
    assert.equal(readFileSync(join(t, 'etc/x'), 'utf8'), 'x');
    assert.equal(readFileSync(join(t, sentinel, 'pwned'), 'utf8'), 'x');
    assertWorldIntact('symlink to /');
  });

  test('symlink chains through .. stay in the root', async () => {
    const t = await applyExpect(
      [
        { name: 'l1', type: 'symlink', linkname: '..' },
        { name: 'd/', type: 'directory' },
        { name: 'd/l2', type: 'symlink', linkname: '../l1/../..' },
        { name: 'd/l3', type: 'symlink', linkname: 'l2/../../../../sentinel' },
        { name: 'd/l3/pwned', data: 'x' },
        { name: 'l1/l1/l1/sentinel/file', data: 'x' },
        { name: 'up', type: 'symlink', linkname: '../../../../../../../../../../..' },
        { name: 'up/up2', type: 'symlink', linkname: '../../..' },
        { name: 'up/up2/etc/shadow', data: 'x' },
      ],
      'ok',
    );
    assert.equal(readFileSync(join(t, 'sentinel/pwned'), 'utf8'), 'x');
    assert.equal(readFileSync(join(t, 'sentinel/file'), 'utf8'), 'x');
    assert.equal(readFileSync(join(t, 'etc/shadow'), 'utf8'), 'x');
    assertWorldIntact('.. chains');
  });

  test('symlinks already in the target are resolved inside it', async () => {
    const t = freshTarget();
    symlinkSync(sentinel, join(t, 'evil'));
    symlinkSync('../sentinel', join(t, 'rel'));
    symlinkSync(join(sentinel, 'file'), join(t, 'file-link'));
    symlinkSync(join(sentinel, 'dir'), join(t, 'dir-link'));
    await applyExpect(
      [
        { name: 'evil/pwned', data: 'x' },
        { name: 'rel/pwned', data: 'x' },
        { name: 'file-link', data: 'replaces the link, not the file' },
        { name: 'dir-link/', type: 'directory', mode: 0o777, uid: 1234 },
        { name: 'evil/.wh.file' },
        { name: 'evil/dir/.wh..wh..opq' },
        { name: 'rel/.wh.dir' },
      ],
      'ok',
      { target: t },
    );
    assert.ok(lstatSync(join(t, 'file-link')).isFile());
    assert.ok(lstatSync(join(t, 'dir-link')).isDirectory());
    assert.equal(readFileSync(join(t, 'sentinel/pwned'), 'utf8'), 'x');
    assertWorldIntact('pre-existing symlinks');
  });

  test('symlink loops fail', async () => {
    await applyExpect(
      [
        { name: 'a', type: 'symlink', linkname: 'b' },
        { name: 'b', type: 'symlink', linkname: 'a' },
        { name: 'a/x', data: 'x' },
      ],
      'invalid-argument',
    );
    assertWorldIntact('loops');
  });

  test('hard links cannot reach outside the root', async () => {
    // /etc/shadow resolves to <target>/etc/shadow, which does not exist.
    await applyExpect([{ name: 'h', type: 'hardlink', linkname: '/etc/shadow' }], 'invalid-argument');
    await applyExpect([{ name: 'h', type: 'hardlink', linkname: '../../../../../etc/shadow' }], 'invalid-argument');
    await applyExpect([{ name: 'h', type: 'hardlink', linkname: `${sentinel}/file` }], 'invalid-argument');
    // Through a symlink planted in the layer: resolved inside, so again nothing to link to.
    await applyExpect(
      [
        { name: 's', type: 'symlink', linkname: sentinel },
        { name: 'h', type: 'hardlink', linkname: 's/file' },
      ],
      'invalid-argument',
    );
    await applyExpect(
      [
        { name: 'etc', type: 'symlink', linkname: '/etc' },
        { name: 'h', type: 'hardlink', linkname: 'etc/shadow' },
      ],
      'invalid-argument',
    );
    // A hard link to a symlink links the symlink itself, never what it points at.
    const t = await applyExpect(
      [
        { name: 'l', type: 'symlink', linkname: '/etc/shadow' },
        { name: 'h', type: 'hardlink', linkname: 'l' },
      ],
      'ok',
    );
    assert.ok(lstatSync(join(t, 'h')).isSymbolicLink());
    assert.equal(lstatSync(join(t, 'h')).ino, lstatSync(join(t, 'l')).ino);
    await applyExpect([{ name: 'd/', type: 'directory' }, { name: 'h', type: 'hardlink', linkname: 'd' }], 'invalid-argument');
    assertWorldIntact('hard links');
  });

  test('device nodes are refused when devices are not allowed', async () => {
    const differ = new WalkingDiffer({ allowDevices: false });
    await applyExpect([{ name: 'dev/sda', type: 'block', devmajor: 8, devminor: 0 }], 'invalid-argument', { differ });
    await applyExpect([{ name: 'dev/mem', type: 'char', devmajor: 1, devminor: 1 }], 'invalid-argument', { differ });
    const t = await applyExpect([{ name: 'fifo', type: 'fifo' }], 'ok', { differ });
    assert.ok(lstatSync(join(t, 'fifo')).isFIFO());
    assertWorldIntact('devices');
  });

  test('a 10 MB PAX header is refused without reading it', async () => {
    const huge = tarOf([{ name: 'x', data: 'x', xattrs: new Map([['user.big', Buffer.alloc(10 << 20, 0x41)]]) }]);
    const started = performance.now();
    await applyExpect(huge, 'invalid-argument');
    assert.ok(performance.now() - started < 2000);
    // An xattr value over the kernel's 64 KiB limit, inside a PAX header of allowed size.
    await applyExpect([{ name: 'x', xattrs: new Map([['user.big', Buffer.alloc(70_000)]]) }], 'invalid-argument');
    // A name longer than PATH_MAX.
    await applyExpect([{ name: 'a/'.repeat(3000), data: 'x' }], 'invalid-argument');
    assertWorldIntact('huge headers');
  });

  test('truncated and corrupt streams fail clearly', async () => {
    const tar = tarOf([
      { name: 'a', data: Buffer.alloc(100_000, 1) },
      { name: 'b', data: Buffer.alloc(100_000, 2) },
    ]);
    const gz = gzipSync(tar);
    const cases: [string, Buffer, string | undefined, RegExp][] = [
      ['gzip cut in half', gz.subarray(0, gz.length >> 1), 'application/vnd.oci.image.layer.v1.tar+gzip', /truncated gzip/],
      ['gzip without its trailer', gz.subarray(0, gz.length - 4), 'application/vnd.oci.image.layer.v1.tar+gzip', /truncated gzip/],
      ['tar cut mid-entry', tar.subarray(0, 150_000), undefined, /truncated tar/],
      ['tar cut mid-header', tar.subarray(0, 100_352 + 200), undefined, /truncated tar/],
      ['garbage', Buffer.alloc(4096, 0x55), undefined, /invalid tar/],
    ];
    for (const [what, bytes, mediaType, message] of cases) {
      const run = new WalkingDiffer().apply(layerOf(bytes, mediaType), bind(freshTarget()));
      await assert.rejects(run, (err: Error) => errorKindOf(err) === 'invalid-argument' && message.test(err.message), what);
    }
    assertWorldIntact('truncation');
  });

  test('malformed whiteouts and names', async () => {
    await applyExpect([{ name: 'x/', type: 'directory' }, { name: 'x/.wh..' }], 'invalid-argument');
    await applyExpect([{ name: '.wh.', data: '' }], 'invalid-argument');
    await applyExpect([{ name: 'f', data: 'f' }, { name: 'f/g', data: 'g' }], 'invalid-argument'); // a file as a parent
    assertWorldIntact('malformed');
  });

  test('overlay upper: lower symlinks are followed inside the root, lowers never change', async () => {
    const upper = freshTarget();
    const mounts: Mount[] = [
      { type: 'overlay', source: 'overlay', options: [`lowerdir=${join(world, 'lower')}`, `upperdir=${upper}`, `workdir=${join(world, 'work')}`] },
    ];
    await applyExpect(
      [
        { name: 'rootlink/pwned', data: 'x' },
        { name: 'abs-sentinel/pwned', data: 'x' },
        { name: 'abs-sentinel/.wh.file' },
        { name: 'up/etc/shadow', data: 'x' },
        { name: 'usr/.wh.file' },
        { name: 'usr/.wh..wh..opq' },
      ],
      'ok',
      { target: upper, mounts },
    );
    assert.equal(readFileSync(join(upper, 'pwned'), 'utf8'), 'x');
    assert.equal(readFileSync(join(upper, sentinel, 'pwned'), 'utf8'), 'x');
    assert.equal(readFileSync(join(upper, 'etc/shadow'), 'utf8'), 'x');
    assert.ok(statSync(join(upper, 'usr/file')).isCharacterDevice());
    assertWorldIntact('overlay');
  });
});

/** mulberry32: small, seeded, good enough to pick names. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('fuzz', root, () => {
  test('random hostile layers never change anything outside the target', async (t) => {
    const rand = prng(0xbe27);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const parts = ['a', 'b', 'c', '..', '.', '', 'sentinel', 'etc', '.wh.a', '.wh.b', '.wh..wh..opq', '.wh..', 'rootlink', 'abs-sentinel', 'up'];
    const linkTargets = ['/', '..', '../..', '../../..', '../sentinel', sentinel, world, `${sentinel}/dir`, 'a', 'a/b', '/a', '/etc', '.', 'up/..', '../../../../../../..'];
    const hardTargets = ['a', 'a/b', 'b', '/etc/passwd', '../sentinel/file', `${sentinel}/file`, 'sentinel/file', 'rootlink/etc/passwd', 'up/etc/passwd', 'c'];
    const nameOf = () => {
      const depth = 1 + Math.floor(rand() * 4);
      const name = Array.from({ length: depth }, () => pick(parts)).join('/');
      return rand() < 0.2 ? `/${name}` : name;
    };
    const started = performance.now();
    const kinds = new Map<string, number>();
    let target = freshTarget();
    const iterations = 800;
    for (let i = 0; i < iterations; i++) {
      if (i % 8 === 0) target = freshTarget(); // else keep what earlier layers left, symlinks included
      const overlay = i % 3 === 0;
      const entries: TestEntry[] = [];
      const count = 1 + Math.floor(rand() * 12);
      for (let j = 0; j < count; j++) {
        const r = rand();
        const name = nameOf();
        if (r < 0.3) entries.push({ name, data: `data ${i}.${j}` });
        else if (r < 0.45) entries.push({ name, type: 'directory', mode: 0o777 });
        else if (r < 0.7) entries.push({ name, type: 'symlink', linkname: pick(linkTargets) });
        else if (r < 0.85) entries.push({ name, type: 'hardlink', linkname: pick(hardTargets) });
        else if (r < 0.9) entries.push({ name, type: 'fifo' });
        else entries.push({ name: `${name.replace(/\/?[^/]*$/, '')}/.wh.${pick(['a', 'b', 'sentinel', 'etc', '..', 'file'])}`.replace(/^\//, '') });
      }
      const mounts: Mount[] = overlay
        ? [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(world, 'lower')}`, `upperdir=${target}`, `workdir=${join(world, 'work')}`] }]
        : bind(target);
      try {
        await new WalkingDiffer().apply(layerOf(tarOf(entries)), mounts);
        kinds.set('ok', (kinds.get('ok') ?? 0) + 1);
      } catch (err) {
        const kind = errorKindOf(err);
        assert.ok(kind, `iteration ${i}: a non-berth error: ${(err as Error).stack}`);
        kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
      }
      assertWorldIntact(`iteration ${i}: ${JSON.stringify(entries)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    t.diagnostic(`${iterations} layers in ${seconds.toFixed(1)} s: ${JSON.stringify(Object.fromEntries(kinds))}`);
    assert.ok(seconds < 20, `fuzz took ${seconds.toFixed(1)} s`);
    assert.ok((kinds.get('ok') ?? 0) > iterations / 10, `too few layers applied: ${JSON.stringify([...kinds])}`);
  });
});
