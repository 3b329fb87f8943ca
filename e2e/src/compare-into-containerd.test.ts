import {
  BerthClient,
  chainId,
  childGcLabel,
  LeasedClientContext,
  OciMediaType,
  readTar,
} from '@berth/client';
import { type CachedImage, cachedPreset, DEFAULT_BUSYBOX, startContainerd, type TestContainerd } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { ctr, startBerthd, type TestDaemon, tempDir } from './harness.js';

/**
 * Issue 4: a layer produced by berth's Compare imports into the real
 * containerd with the same files. berthd unpacks busybox, a snapshot on top of
 * it is changed through a real overlay mount, berth's Diff service turns the
 * change into a layer, the layer goes into an image that `ctr images export`
 * takes out of berthd, and Debian's containerd 1.6 imports, unpacks (checking
 * the diff IDs) and mounts it; its tree must be the one berth had mounted.
 */

const NS = 'compare';
const BASE_IMAGE = 'localhost/berth-test/busybox:latest';
const UNCOMPRESSED = 'containerd.io/uncompressed';
/** What the layers write, checked on containerd's side. */
const NEW_FILE = "hello from berth's differ\n";
const PASSWD_LINE = 'berth:x:1234:5678:berth:/srv:/bin/sh\n';

const onPath = (tool: string) => (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, tool)));

function whyNot(): string | false {
  if (process.getuid?.() !== 0) return 'needs root: overlay mounts and a real containerd';
  for (const tool of ['containerd', 'ctr', 'mount', 'umount']) if (!onPath(tool)) return `${tool} not installed`;
  if (!existsSync(DEFAULT_BUSYBOX)) return `${DEFAULT_BUSYBOX} missing (busybox-static)`;
  return false;
}

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * One entry per path below `root`: type, mode, owner, size, content digest or
 * link target, whole-second mtime (not for directories: applying a layer
 * touches its parents), and for a further name of a multiply-linked file the
 * first name of that inode.
 */
function describeTree(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const inodes = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const full = join(root, path);
      const st = lstatSync(full, { bigint: true });
      const mode = (Number(st.mode) & 0o7777).toString(8);
      const owner = `${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out[path] = `dir ${mode} ${owner}`;
        walk(path);
      } else if (st.isSymbolicLink()) {
        out[path] = `symlink ${owner} -> ${readlinkSync(full)}`;
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? inodes.get(key) : undefined;
        if (st.nlink > 1n && !first) inodes.set(key, path);
        out[path] = first
          ? `hardlink to ${first}`
          : `file ${mode} ${owner} ${st.size} ${sha256(readFileSync(full))} mtime=${st.mtimeNs / 1_000_000_000n}`;
      } else {
        out[path] = `other ${mode} ${owner} rdev=${st.rdev}`;
      }
    }
  };
  walk('');
  return out;
}

async function tarEntries(blob: Buffer, gzip: boolean): Promise<Map<string, { type: string; mode: number; linkname: string; body: string }>> {
  const out = new Map<string, { type: string; mode: number; linkname: string; body: string }>();
  const bytes = gzip ? gunzipSync(blob) : blob;
  async function* source() {
    yield bytes;
  }
  for await (const e of readTar(source())) {
    const parts: Buffer[] = [];
    for await (const b of e.body) parts.push(b);
    out.set(e.name, { type: e.type, mode: e.mode, linkname: e.linkname, body: Buffer.concat(parts).toString('utf8') });
  }
  return out;
}

interface Layer {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  /** Its `containerd.io/uncompressed` label. */
  readonly diffId: string;
}

interface Built {
  readonly name: string;
  /** The diff IDs of the image's layers, in order. */
  readonly diffIds: readonly string[];
}

describe('a layer from berth Compare imports into the real containerd with the same files', { skip: whyNot() }, () => {
  let image: CachedImage;
  let d: TestDaemon;
  let c: TestContainerd;
  let client: BerthClient;
  /** Calls under a lease, so that snapshots and blobs outlive GC until an image holds them. */
  let lc: BerthClient;
  let mnt: string;
  const mounted: string[] = [];
  /** What berth had mounted for the final tree, to hold containerd's against. */
  let expectedTree: Record<string, string>;
  let basePasswd: string;
  const layers = {} as Record<'one' | 'fast' | 'walk', Layer>;
  const images: Built[] = [];

  const umount = (target: string) => {
    execFileSync('umount', [target]);
    mounted.splice(mounted.indexOf(target), 1);
  };

  /** Mount a berthd snapshot with the command `ctr snapshots mounts` prints, as a user would paste it. */
  async function mountSnapshot(key: string, name: string): Promise<string> {
    const target = join(mnt, name);
    mkdirSync(target, { recursive: true });
    const r = await ctr(d, ['-n', NS, 'snapshots', 'mounts', target, key]);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(line);
    assert.ok(m, `not a mount command: ${line}`);
    execFileSync('mount', ['-t', m[1] as string, m[2] as string, m[3] as string, '-o', m[4] as string]);
    mounted.push(target);
    return target;
  }

  /** berth's Diff service: the changes from the view of `parent` to `upperKey`'s mounts, as a gzip layer. */
  async function compare(parent: string, upperKey: string, ref: string) {
    const lowerKey = `${ref}-lower`;
    const lower = await lc.snapshots.view(lowerKey, parent);
    try {
      const upper = await lc.snapshots.mounts(upperKey);
      const desc = await lc.diff.diff(lower, upper, { ref, mediaType: OciMediaType.ociLayerGzip });
      assert.equal(desc.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      const info = await lc.content.info(desc.digest);
      assert.equal(info.size, desc.size);
      const diffId = info.labels[UNCOMPRESSED];
      assert.match(diffId ?? '', /^sha256:[0-9a-f]{64}$/, `no ${UNCOMPRESSED} label: ${JSON.stringify(info.labels)}`);
      const blob = await lc.content.readAll(desc.digest);
      assert.equal(sha256(blob), desc.digest);
      assert.equal(sha256(gunzipSync(blob)), diffId, 'the diff ID label is the digest of the uncompressed layer');
      return { digest: desc.digest, size: desc.size, mediaType: desc.mediaType, diffId: diffId as string, blob };
    } finally {
      await lc.snapshots.remove(lowerKey);
    }
  }

  before(async () => {
    image = await cachedPreset('small', { ociArchive: true });
    mnt = tempDir('berth-compare-mnt-');
    d = await startBerthd();
    c = await startContainerd({ namespace: 'berth-compare' });
    client = new BerthClient({ address: d.address, namespace: NS, timeout: 30_000 });
    const lease = await client.leases.create({ expireAfterMs: 10 * 60_000 });
    lc = new BerthClient(new LeasedClientContext(client.context, lease.id));
  });

  after(async () => {
    // Whatever a failed test left mounted goes first (latest first), so nothing is removed through a mount.
    for (const target of mounted.reverse()) {
      try {
        execFileSync('umount', ['-l', target]);
      } catch {}
    }
    client?.close();
    await c?.stop();
    await d?.cleanup();
    if (mnt) rmSync(mnt, { recursive: true, force: true });
  });

  test('berthd imports and unpacks busybox', async () => {
    const r = await ctr(d, ['-n', NS, 'images', 'import', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /unpacking .*done/);
    assert.equal((await client.images.get(BASE_IMAGE)).target.digest, image.result.manifest.digest);
    const base = await client.snapshots.stat(chainId(image.result.layers.map((l) => l.diffId)));
    assert.equal(base.kind, 'committed');
  });

  test('Compare of a first change: a directory tree that the next layer replaces', async () => {
    const baseChain = chainId(image.result.layers.map((l) => l.diffId));
    await lc.snapshots.prepare('stage1-active', baseChain);
    const root = await mountSnapshot('stage1-active', 'stage1');
    try {
      basePasswd = readFileSync(join(root, 'etc/passwd'), 'utf8');
      mkdirSync(join(root, 'data/old-dir/sub'), { recursive: true });
      writeFileSync(join(root, 'data/keep.txt'), 'kept\n');
      writeFileSync(join(root, 'data/old-file.txt'), 'to be deleted\n');
      writeFileSync(join(root, 'data/old-dir/a.txt'), 'a\n');
      writeFileSync(join(root, 'data/old-dir/sub/b.txt'), 'b\n');
    } finally {
      umount(root);
    }
    const one = await compare(baseChain, 'stage1-active', 'layer-one');
    const entries = await tarEntries(one.blob, true);
    assert.deepEqual(
      [...entries.keys()].sort(),
      ['data/', 'data/keep.txt', 'data/old-dir/', 'data/old-dir/a.txt', 'data/old-dir/sub/', 'data/old-dir/sub/b.txt', 'data/old-file.txt'],
    );
    layers.one = one;
    await lc.snapshots.commit(chainId([...image.result.layers.map((l) => l.diffId), one.diffId]), 'stage1-active');
  });

  test('Compare of every kind of change: overlay upper (fast path) and double walk give layers with the right entries', async () => {
    const stage1 = chainId([...image.result.layers.map((l) => l.diffId), layers.one.diffId]);
    await lc.snapshots.prepare('stage2-active', stage1);
    const root = await mountSnapshot('stage2-active', 'stage2');
    try {
      // A new directory holding a regular file (mode 0640, its own owner), an empty directory, symlinks and a hard link.
      mkdirSync(join(root, 'srv'));
      writeFileSync(join(root, 'srv/new.txt'), NEW_FILE);
      chmodSync(join(root, 'srv/new.txt'), 0o640);
      chownSync(join(root, 'srv/new.txt'), 1234, 5678);
      mkdirSync(join(root, 'srv/empty'));
      chmodSync(join(root, 'srv/empty'), 0o710);
      symlinkSync('../etc/passwd', join(root, 'srv/relative-link'));
      symlinkSync('/data/keep.txt', join(root, 'srv/absolute-link'));
      linkSync(join(root, 'srv/new.txt'), join(root, 'srv/new-hardlink'));
      // A file of the base layer changed, then given a second name.
      appendFileSync(join(root, 'etc/passwd'), PASSWD_LINE);
      linkSync(join(root, 'etc/passwd'), join(root, 'etc/passwd.hardlink'));
      // Deleted: one file of the base layer, one of the first layer.
      rmSync(join(root, 'etc/group'));
      rmSync(join(root, 'data/old-file.txt'));
      // A directory of the first layer replaced: overlayfs makes it opaque.
      rmSync(join(root, 'data/old-dir'), { recursive: true });
      mkdirSync(join(root, 'data/old-dir'));
      writeFileSync(join(root, 'data/old-dir/fresh.txt'), 'fresh\n');
    } finally {
      umount(root);
    }

    // The prepared snapshot's overlay has the view's lowerdirs: the differ reads its upperdir.
    const fast = await compare(stage1, 'stage2-active', 'layer-fast');
    // Debian's ctr asks berth's Diff service for the same change (rootfs.CreateDiff, then reads the blob back): the same bytes.
    let r = await ctr(d, ['-n', NS, 'snapshots', 'diff', 'stage2-active'], { binary: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(r.stdoutBytes), fast.digest, 'ctr snapshots diff of the active snapshot gives the same layer');
    await lc.snapshots.commit('stage2', 'stage2-active');
    // A read-only view has no upperdir: the differ walks both trees.
    await lc.snapshots.view('stage2-view', 'stage2');
    const view = await mountSnapshot('stage2-view', 'stage2-view');
    try {
      expectedTree = describeTree(view);
    } finally {
      umount(view);
    }
    const walk = await compare(stage1, 'stage2-view', 'layer-walk');
    await lc.snapshots.remove('stage2-view');
    // On a committed snapshot ctr compares two views: the double walk again.
    r = await ctr(d, ['-n', NS, 'snapshots', 'diff', 'stage2'], { binary: true });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(r.stdoutBytes), walk.digest, 'ctr snapshots diff of the committed snapshot gives the same layer');

    for (const [how, layer] of [
      ['fast', fast],
      ['walk', walk],
    ] as const) {
      const e = await tarEntries(layer.blob, true);
      const at = (name: string) => {
        const entry = e.get(name);
        assert.ok(entry, `${how}: ${name} missing from the layer: ${[...e.keys()].join(' ')}`);
        return entry;
      };
      // One name of a linked pair carries the bytes (the first in name order: new-hardlink), the other links to it.
      const pair = [at('srv/new.txt'), at('srv/new-hardlink')];
      const data = pair.find((x) => x.type === 'file');
      assert.equal(data?.mode, 0o640, how);
      assert.equal(data?.body, NEW_FILE, how);
      assert.deepEqual(
        pair.map((x) => x.type).sort(),
        ['file', 'hardlink'],
        `${how}: ${JSON.stringify(pair)}`,
      );
      assert.ok(['srv/new.txt', 'srv/new-hardlink'].includes(pair.find((x) => x.type === 'hardlink')?.linkname ?? ''), how);
      assert.equal(at('srv/empty/').type, 'directory', how);
      assert.equal(at('srv/relative-link').linkname, '../etc/passwd', how);
      assert.equal(at('srv/absolute-link').linkname, '/data/keep.txt', how);
      assert.equal(at('etc/passwd').body, basePasswd + PASSWD_LINE, how);
      assert.deepEqual([at('etc/passwd.hardlink').type, at('etc/passwd.hardlink').linkname], ['hardlink', 'etc/passwd'], how);
      assert.equal(at('etc/.wh.group').type, 'file', how);
      assert.equal(at('data/.wh.old-file.txt').type, 'file', how);
      assert.equal(at('data/old-dir/fresh.txt').body, 'fresh\n', how);
      assert.ok(!e.has('data/keep.txt') && !e.has('bin/busybox'), `${how}: unchanged files in the layer: ${[...e.keys()].join(' ')}`);
    }
    // The upperdir records the replaced directory as opaque; the walk names each vanished entry.
    assert.ok((await tarEntries(fast.blob, true)).has('data/old-dir/.wh..wh..opq'), 'fast path: no opaque whiteout');
    const walked = await tarEntries(walk.blob, true);
    assert.ok(walked.has('data/old-dir/.wh.a.txt') && walked.has('data/old-dir/.wh.sub'), [...walked.keys()].join(' '));
    layers.fast = fast;
    layers.walk = walk;
  });

  test('images made of the new layers go into berthd and out through ctr images export', async () => {
    const baseManifest = JSON.parse((await lc.content.readAll(image.result.manifest.digest)).toString('utf8'));
    const baseConfig = JSON.parse((await lc.content.readAll(image.result.config.digest)).toString('utf8'));
    for (const how of ['fast', 'walk'] as const) {
      const added = [layers.one, layers[how]];
      const diffIds = [...baseConfig.rootfs.diff_ids, ...added.map((l) => l.diffId)];
      const config = Buffer.from(
        JSON.stringify({
          ...baseConfig,
          rootfs: { type: 'layers', diff_ids: diffIds },
          history: [
            ...baseConfig.history,
            { created: '1970-01-01T00:00:00Z', created_by: 'berth compare: data' },
            { created: '1970-01-01T00:00:00Z', created_by: `berth compare (${how}): every kind of change` },
          ],
        }),
      );
      const configDesc = { mediaType: baseManifest.config.mediaType as string, digest: sha256(config), size: config.length };
      await lc.content.ingest(`config-${how}`, config, { expected: configDesc.digest, total: config.length });
      const layerDescs = [...baseManifest.layers, ...added.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size }))];
      const manifest = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: OciMediaType.ociManifest, config: configDesc, layers: layerDescs }),
      );
      const counters = new Map<string, number>();
      const labels: Record<string, string> = {};
      for (const child of [configDesc, ...layerDescs]) labels[childGcLabel(child, counters)] = child.digest;
      const manifestDesc = { mediaType: OciMediaType.ociManifest, digest: sha256(manifest), size: manifest.length };
      await lc.content.ingest(`manifest-${how}`, manifest, { expected: manifestDesc.digest, total: manifest.length, labels });
      const name = `localhost/berth-test/compare-${how}:latest`;
      await lc.images.create({ name, target: manifestDesc });
      images.push({ name, diffIds });
    }
    const archive = join(mnt, 'compare.oci.tar');
    const r = await ctr(d, ['-n', NS, 'images', 'export', archive, ...images.map((i) => i.name)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(lstatSync(archive).size > image.result.totalSize, 'the archive holds the base layer and the new ones');
  });

  test('containerd imports and unpacks the archive, and mounts the very tree berth had', async () => {
    const archive = join(mnt, 'compare.oci.tar');
    // Unpacking makes containerd check each layer's digest against the config's diff IDs.
    let r = await c.ctr(['images', 'import', archive]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    for (const { name } of images) assert.match(r.stdout, new RegExp(`unpacking ${name.replace(/[.]/g, '\\.')} \\(sha256:[0-9a-f]{64}\\)\\.\\.\\.done`));
    r = await c.ctr(['images', 'check']);
    assert.equal(r.code, 0, r.stderr);
    for (const { name } of images) assert.match(r.stdout, new RegExp(`${name.replace(/[.]/g, '\\.')}\\s.*complete \\(\\d+/\\d+\\)`));
    r = await c.ctr(['snapshots', 'ls']);
    for (const { diffIds } of images) assert.ok(r.stdout.includes(chainId(diffIds)), `no snapshot ${chainId(diffIds)}:\n${r.stdout}`);

    for (const { name } of images) {
      const target = join(mnt, `containerd-${name.includes('fast') ? 'fast' : 'walk'}`);
      mkdirSync(target);
      r = await c.ctr(['images', 'mount', name, target]);
      assert.equal(r.code, 0, r.stderr);
      mounted.push(target);
      try {
        const st = (p: string) => lstatSync(join(target, p));
        assert.equal(readFileSync(join(target, 'srv/new.txt'), 'utf8'), NEW_FILE, name);
        assert.equal(st('srv/new.txt').mode & 0o7777, 0o640, name);
        assert.deepEqual([st('srv/new.txt').uid, st('srv/new.txt').gid], [1234, 5678], name);
        assert.ok(st('srv/empty').isDirectory() && (st('srv/empty').mode & 0o7777) === 0o710, name);
        assert.deepEqual(readdirSync(join(target, 'srv/empty')), [], name);
        assert.equal(readlinkSync(join(target, 'srv/relative-link')), '../etc/passwd', name);
        assert.equal(readlinkSync(join(target, 'srv/absolute-link')), '/data/keep.txt', name);
        assert.equal(st('srv/new-hardlink').ino, st('srv/new.txt').ino, `${name}: the hard link is the same inode`);
        assert.equal(st('srv/new.txt').nlink, 2, name);
        assert.equal(readFileSync(join(target, 'etc/passwd'), 'utf8'), basePasswd + PASSWD_LINE, name);
        assert.equal(st('etc/passwd.hardlink').ino, st('etc/passwd').ino, name);
        assert.ok(!existsSync(join(target, 'etc/group')), `${name}: etc/group was deleted`);
        assert.ok(!existsSync(join(target, 'data/old-file.txt')), `${name}: data/old-file.txt was deleted`);
        assert.equal(readFileSync(join(target, 'data/keep.txt'), 'utf8'), 'kept\n', name);
        assert.deepEqual(readdirSync(join(target, 'data/old-dir')), ['fresh.txt'], `${name}: data/old-dir was replaced`);
        assert.ok(st('bin/busybox').isFile() && readlinkSync(join(target, 'bin/sh')) === 'busybox', name);
        // Everything else too: the whole tree, file by file, is the one berth's snapshot showed.
        assert.deepEqual(describeTree(target), expectedTree, name);
      } finally {
        r = await c.ctr(['images', 'unmount', '--rm', target]);
        if (r.code === 0) mounted.splice(mounted.indexOf(target), 1);
        assert.equal(r.code, 0, r.stderr);
      }
    }
  });

  // containerd's walking differ labels a blob that was already in the store without its diff ID; so does berth's.
  test('Compare labels a layer already in the store without its diff ID, as containerd does', async () => {
      await lc.content.update(layers.walk.digest, {}, [`labels.${UNCOMPRESSED}`]);
      assert.equal((await lc.content.info(layers.walk.digest)).labels[UNCOMPRESSED], undefined);
      const r = await ctr(d, ['-n', NS, 'snapshots', 'diff', 'stage2'], { binary: true });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdoutBytes), layers.walk.digest);
      assert.equal((await lc.content.info(layers.walk.digest)).labels[UNCOMPRESSED], layers.walk.diffId);
  });
});
