import { type CachedImage, cachedPreset } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { berth, ctr, startBerthd, type TestDaemon } from './harness.js';
import { inspectWithSkopeo, pushWithSkopeo, startRegistry, type TestRegistry } from './registry.js';

const IMAGE = 'localhost/berth-test/busybox:latest';

/** The berth CLI moving images in and out of berthd: archives and a real registry (checked with skopeo). */
describe('berth CLI: content and images', () => {
  let d: TestDaemon;
  let registry: TestRegistry;
  let image: CachedImage;

  before(async () => {
    image = await cachedPreset('small', { ociArchive: true, dockerArchive: true });
    registry = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await registry?.stop();
  });

  test('content ingest, ls, get, label, rm', async () => {
    const data = randomBytes(200_000);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    let r = await berth(d, ['content', 'ingest', 'blob-1', '--expected-digest', digest, '--label', 'containerd.io/gc.root=e2e'], {
      input: data,
    });
    assert.equal(r.code, 0, r.stderr);
    r = await berth(d, ['content', 'ls', '--json']);
    const listed = JSON.parse(r.stdout) as Array<{ digest: string; size: number }>;
    assert.ok(listed.some((i) => i.digest === digest && i.size === data.length), r.stdout);
    r = await berth(d, ['content', 'get', digest], { binary: true });
    assert.ok(r.stdoutBytes.equals(data));
    r = await berth(d, ['content', 'rm', digest]);
    assert.equal(r.code, 0, r.stderr);
    r = await berth(d, ['content', 'get', digest]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berth: .*not found/m);
  });

  test('content ingest < FILE (berthd reads it by descriptor): ctr reads back the same bytes; a wrong digest leaves no blob', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 3);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const file = join(d.dir, 'by-descriptor');
    writeFileSync(file, data);
    let r = await berth(d, ['-n', 'fd', 'content', 'ingest', 'fd-1', '--expected-digest', digest, '--label', 'containerd.io/gc.root=e2e'], {
      stdinFile: file,
    });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'fd', 'content', 'get', digest], { binary: true });
    assert.ok(r.stdoutBytes.equals(data));
    const wrong = `sha256:${'0'.repeat(64)}`;
    r = await berth(d, ['-n', 'fd', 'content', 'ingest', 'fd-2', '--expected-digest', wrong], { stdinFile: file });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unexpected commit digest/);
    assert.equal((await ctr(d, ['-n', 'fd', 'content', 'get', wrong])).code, 1);
    assert.match((await ctr(d, ['-n', 'fd', 'content', 'active'])).stdout, /fd-2/, 'the ingest stays, to resume or abort');
    assert.equal((await berth(d, ['-n', 'fd', 'content', 'abort', 'fd-2'])).code, 0);
  });

  test('images import (OCI and docker archives), export, and re-import elsewhere with the same digests', async () => {
    let r = await berth(d, ['-n', 'oci', 'images', 'import', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    r = await berth(d, ['-n', 'docker', 'images', 'import', image.dockerArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    // ctr sees what the berth CLI imported.
    assert.match((await ctr(d, ['-n', 'oci', 'images', 'ls'])).stdout, new RegExp(image.result.manifest.digest));
    assert.match((await ctr(d, ['-n', 'docker', 'images', 'check'])).stdout, /complete/);

    const exported = join(d.dir, 'berth-export.tar');
    r = await berth(d, ['-n', 'oci', 'images', 'export', exported, IMAGE]);
    assert.equal(r.code, 0, r.stderr);
    r = await berth(d, ['-n', 'again', 'images', 'import', exported]);
    assert.equal(r.code, 0, r.stderr);
    const target = async (ns: string) =>
      (JSON.parse((await berth(d, ['-n', ns, 'images', 'ls', '--json'])).stdout) as Array<{ name: string; target: { digest: string } }>)
        .find((i) => i.name === IMAGE)?.target.digest;
    assert.equal(await target('again'), image.result.manifest.digest);
    assert.equal(await target('oci'), image.result.manifest.digest);
  });

  test('a hostile archive is refused with a clear error and leaves nothing', async () => {
    const bad = join(d.dir, 'bad.tar');
    // A tar whose index.json is not JSON.
    const header = Buffer.alloc(512);
    header.write('index.json');
    header.write('0000644\0', 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    const body = Buffer.from('{ not json');
    header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
    header.write('00000000000\0', 136);
    header.write('        ', 148);
    header.write('0', 156);
    header.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    writeFileSync(bad, Buffer.concat([header, body, Buffer.alloc(512 - body.length), Buffer.alloc(1024)]));
    const r = await berth(d, ['-n', 'hostile', 'images', 'import', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berth: .*index\.json/m);
    assert.equal((await berth(d, ['-n', 'hostile', 'images', 'ls', '-q'])).stdout.trim(), '');
    assert.equal((await berth(d, ['-n', 'hostile', 'content', 'ls', '-q'])).stdout.trim(), '');
  });

  test('images pull and push against a real registry, checked with skopeo', async () => {
    const source = `${registry.host}/berth/src:v1`;
    await pushWithSkopeo(image.layoutDir, source);
    let r = await berth(d, ['-n', 'reg', 'images', 'pull', '--plain-http', source], { timeout: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match((await berth(d, ['-n', 'reg', 'images', 'ls', '-q'])).stdout, /berth\/src:v1/);
    const dest = `${registry.host}/berth/copy:v2`;
    r = await berth(d, ['-n', 'reg', 'images', 'push', '--plain-http', dest, source], { timeout: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    const inspected = await inspectWithSkopeo(dest);
    assert.equal(inspected.Digest, image.result.manifest.digest);
  });
});
