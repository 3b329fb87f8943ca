import { cachedPreset, type CachedImage } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ctr, startBerthd, type TestDaemon } from './harness.js';
import { pushWithSkopeo, startRegistry, type TestRegistry } from './registry.js';

const IMAGE = 'localhost/berth-test/busybox:latest';

function blobsOnDisk(d: TestDaemon): string[] {
  const dir = join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
  return existsSync(dir) ? readdirSync(dir).map((h) => `sha256:${h}`).sort() : [];
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `ctr images import/export/rm` and `ctr content fetch` against berthd, with images built here. */
describe('ctr images against berthd', () => {
  let d: TestDaemon;
  let image: CachedImage;

  before(async () => {
    image = await cachedPreset('small', { ociArchive: true });
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
  });

  test('import --no-unpack, ls, export, and re-import in another namespace gives the same digests', async () => {
    let r = await ctr(d, ['-n', 'imp', 'images', 'import', '--no-unpack', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'imp', 'images', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.startsWith(IMAGE));
    assert.ok(line, r.stdout);
    assert.ok(line.includes(image.result.manifest.digest), line);
    r = await ctr(d, ['-n', 'imp', 'images', 'check']);
    assert.match(r.stdout, new RegExp(`${IMAGE.replace(/[.]/g, '\\.')}\\s+\\S+\\s+\\S+\\s+complete`));

    const exported = join(d.dir, 'export.tar');
    r = await ctr(d, ['-n', 'imp', 'images', 'export', exported, IMAGE]);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'again', 'images', 'import', '--no-unpack', exported]);
    assert.equal(r.code, 0, r.stderr);
    const contentOf = async (ns: string) =>
      (await ctr(d, ['-n', ns, 'content', 'ls', '-q'])).stdout.split('\n').filter(Boolean).sort();
    const tree = [image.result.manifest.digest, image.result.config.digest, ...image.result.layers.map((l) => l.digest)];
    for (const ns of ['imp', 'again']) {
      const have = await contentOf(ns);
      for (const digest of tree) assert.ok(have.includes(digest), `${digest} in ${ns}`);
      const target = (await ctr(d, ['-n', ns, 'images', 'ls'])).stdout.split('\n').find((l) => l.startsWith(IMAGE));
      assert.ok(target?.includes(image.result.manifest.digest), `${ns}: ${target}`);
    }
    // One copy on disk serves both namespaces.
    const union = new Set([...(await contentOf('imp')), ...(await contentOf('again'))]);
    await waitFor(() => blobsOnDisk(d).length === union.size, 'unreferenced import indexes collected');
    assert.deepEqual(blobsOnDisk(d), [...union].sort());
  });

  test('images rm --sync leaves no unreferenced blob', async () => {
    assert.equal((await ctr(d, ['-n', 'rmsync', 'images', 'import', '--no-unpack', image.ociArchive as string])).code, 0);
    const before = blobsOnDisk(d);
    let r = await ctr(d, ['-n', 'rmsync', 'images', 'rm', '--sync', IMAGE]);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'rmsync', 'content', 'ls', '-q']);
    assert.equal(r.stdout.trim(), '', 'no blob left in the namespace');
    // Blobs other namespaces still hold stay; nothing else does.
    const held = new Set<string>();
    for (const ns of ['imp', 'again']) {
      for (const dgst of (await ctr(d, ['-n', ns, 'content', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) held.add(dgst);
    }
    assert.deepEqual(blobsOnDisk(d), [...held].sort());
    assert.ok(before.length >= held.size);
    // Dropping the last references empties the store.
    for (const ns of ['imp', 'again']) assert.equal((await ctr(d, ['-n', ns, 'images', 'rm', '--sync', IMAGE])).code, 0);
    assert.deepEqual(blobsOnDisk(d), []);
  });

  test('tag, label and namespace deletion rules', async () => {
    assert.equal((await ctr(d, ['-n', 'tags', 'images', 'import', '--no-unpack', image.ociArchive as string])).code, 0);
    let r = await ctr(d, ['-n', 'tags', 'images', 'tag', IMAGE, 'localhost/berth-test/busybox:copy']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'tags', 'images', 'label', 'localhost/berth-test/busybox:copy', 'stage=e2e']);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await ctr(d, ['-n', 'tags', 'images', 'ls'])).stdout, /busybox:copy.*stage=e2e/);
    r = await ctr(d, ['namespaces', 'rm', 'tags']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /namespace "tags" must be empty, but it still has (images|blobs)/);
  });
});

describe('ctr content fetch from a real registry', () => {
  let d: TestDaemon;
  let registry: TestRegistry;

  before(async () => {
    registry = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await registry?.stop();
  });

  test('content fetch --plain-http stores the manifest, config and layers', async () => {
    const image = await cachedPreset('small');
    const ref = `${registry.host}/berth/busybox:v1`;
    await pushWithSkopeo(image.layoutDir, ref);
    const r = await ctr(d, ['content', 'fetch', '--plain-http', ref], { timeout: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const have = (await ctr(d, ['content', 'ls', '-q'])).stdout;
    for (const digest of [image.result.manifest.digest, image.result.config.digest, ...image.result.layers.map((l) => l.digest)]) {
      assert.ok(have.includes(digest), `${digest} fetched`);
    }
    // The fetch leaves gc.ref labels so a root on the manifest keeps the tree.
    const labels = (await ctr(d, ['content', 'ls'])).stdout;
    assert.match(labels, /containerd\.io\/gc\.ref\.content\.config=/);
  });
});
