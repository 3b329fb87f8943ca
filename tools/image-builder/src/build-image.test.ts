import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { type BuildResult, buildImage } from './build-image.js';
import { blobPath, readImageLayout } from './image-layout.js';
import { BUSYBOX_APPLETS, DEFAULT_BUSYBOX } from './layer-sources.js';
import { MediaType } from './oci.js';
import { PRESETS } from './presets.js';
import { runCommand, which } from './processes.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function tarListing(layer: Buffer): Promise<Map<string, { type: string; mode: number; linkname: string | null; body: Buffer }>> {
  const extract = tar.extract();
  extract.end(layer);
  const out = new Map<string, { type: string; mode: number; linkname: string | null; body: Buffer }>();
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const c of entry) parts.push(c as Buffer);
    const h = entry.header;
    out.set(h.name, { type: h.type, mode: h.mode, linkname: h.linkname ?? null, body: Buffer.concat(parts) });
  }
  return out;
}

describe('buildImage', { skip: !existsSync(DEFAULT_BUSYBOX) && `${DEFAULT_BUSYBOX} missing (busybox-static)` }, () => {
  let dir: string;
  let small: BuildResult;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-builder-'));
    small = await buildImage({ ...PRESETS.small, out: join(dir, 'small') });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('writes an OCI layout whose index names the image for ctr and for oci:DIR:TAG', async () => {
    assert.deepEqual(JSON.parse(await readFile(join(small.layoutDir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(small.layoutDir, 'index.json'), 'utf8'));
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.manifests.length, 1);
    assert.deepEqual(index.manifests[0], small.manifest);
    assert.deepEqual(index.manifests[0].annotations, {
      'io.containerd.image.name': 'localhost/berth-test/busybox:latest',
      'org.opencontainers.image.ref.name': 'latest',
    });
    // Every blob's name is its digest, and nothing else is left in blobs/sha256.
    const blobs = await readdir(join(small.layoutDir, 'blobs', 'sha256'));
    assert.equal(blobs.length, 3);
    for (const b of blobs) assert.equal(sha256(await readFile(join(small.layoutDir, 'blobs', 'sha256', b))), `sha256:${b}`);
  });

  test('manifest, config and diff ids agree with the layer bytes', async () => {
    const [image] = await readImageLayout(small.layoutDir);
    assert.ok(image);
    assert.equal(image.manifest.mediaType, MediaType.ImageManifest);
    assert.equal(image.manifest.config.mediaType, MediaType.ImageConfig);
    assert.equal(image.config.architecture, 'amd64');
    assert.equal(image.config.os, 'linux');
    assert.deepEqual(image.config.config.Cmd, ['/bin/sh']);
    assert.equal(image.config.created, '1970-01-01T00:00:00Z');
    const layer = image.manifest.layers[0];
    assert.ok(layer);
    assert.equal(layer.mediaType, MediaType.LayerTarGzip);
    const gz = await readFile(blobPath(small.layoutDir, layer.digest));
    assert.equal(gz.length, layer.size);
    const plain = gunzipSync(gz);
    assert.deepEqual(image.config.rootfs.diff_ids, [sha256(plain)]);
    assert.equal(small.layers[0]?.uncompressedSize, plain.length);
  });

  test('the busybox layer holds the static busybox, applet links, passwd and group', async () => {
    const entries = await tarListing(gunzipSync(await readFile(blobPath(small.layoutDir, small.layers[0]?.digest ?? ''))));
    const busybox = entries.get('bin/busybox');
    assert.equal(busybox?.mode, 0o755);
    assert.deepEqual(busybox?.body, await readFile(DEFAULT_BUSYBOX));
    for (const applet of BUSYBOX_APPLETS) {
      assert.deepEqual([entries.get(`bin/${applet}`)?.type, entries.get(`bin/${applet}`)?.linkname], ['symlink', 'busybox']);
    }
    assert.match(entries.get('etc/passwd')?.body.toString() ?? '', /^root:x:0:0:.*\nnobody:x:65534:65534:/);
    assert.match(entries.get('etc/group')?.body.toString() ?? '', /^root:x:0:\nnobody:x:65534:/);
    assert.equal(entries.get('tmp')?.mode, 0o1777);
  });

  test('the same options give the same digests; another gzip level other layer digests, same diff ids', async () => {
    const again = await buildImage({ ...PRESETS.small, out: join(dir, 'again') });
    assert.equal(again.manifest.digest, small.manifest.digest);
    assert.deepEqual(again.layers, small.layers);
    const level9 = await buildImage({ ...PRESETS.small, gzipLevel: 9, out: join(dir, 'level9') });
    assert.notEqual(level9.layers[0]?.digest, small.layers[0]?.digest);
    assert.equal(level9.layers[0]?.diffId, small.layers[0]?.diffId);
    assert.equal(level9.config.digest, small.config.digest, 'the config depends on diff ids only');
  });

  test('files and random layers, uncompressed, with Entrypoint, Env and WorkingDir', async () => {
    const r = await buildImage({
      out: join(dir, 'files'),
      name: 'localhost/berth-test/files:v1',
      compression: 'none',
      layers: [
        { kind: 'files', files: [{ path: '/app/run.sh', content: '#!/bin/sh\necho ok\n', mode: 0o755 }, { path: 'app/blob', size: 5000 }] },
        { kind: 'random', size: 200_000, seed: 's1' },
      ],
      config: { Entrypoint: ['/app/run.sh'], Cmd: ['--x'], Env: ['A=1'], WorkingDir: '/app' },
    });
    assert.equal(r.tag, 'v1');
    assert.equal(r.layers.length, 2);
    for (const l of r.layers) {
      assert.equal(l.mediaType, MediaType.LayerTar);
      assert.equal(l.digest, l.diffId);
      assert.equal(l.size, l.uncompressedSize);
    }
    const files = await tarListing(await readFile(blobPath(r.layoutDir, r.layers[0]?.digest ?? '')));
    assert.deepEqual([...files.keys()], ['app', 'app/blob', 'app/run.sh']);
    assert.equal(files.get('app/run.sh')?.mode, 0o755);
    assert.equal(files.get('app/blob')?.body.length, 5000);
    const random = await tarListing(await readFile(blobPath(r.layoutDir, r.layers[1]?.digest ?? '')));
    assert.equal(random.get('data/s1.bin')?.body.length, 200_000);
    const [image] = await readImageLayout(r.layoutDir);
    assert.deepEqual(image?.config.config, { Entrypoint: ['/app/run.sh'], Cmd: ['--x'], Env: ['A=1'], WorkingDir: '/app' });
    assert.equal(image?.config.history.length, 2);
  });

  test('bad options fail before anything is written', async () => {
    await assert.rejects(buildImage({ out: join(dir, 'none'), name: 'x', layers: [] }), /at least one layer/);
    await assert.rejects(buildImage({ ...PRESETS.small, gzipLevel: 12, out: join(dir, 'bad') }), /gzipLevel/);
    await assert.rejects(
      buildImage({ out: join(dir, 'bad2'), name: 'x', layers: [{ kind: 'busybox', busyboxPath: join(dir, 'nope') }] }),
      /ENOENT/,
    );
  });

  test('umoci lists the layout and unpacks a rootfs with busybox', async (t) => {
    if (!(await which('umoci'))) return t.skip('umoci not installed');
    const ls = await runCommand('umoci', ['ls', '--layout', small.layoutDir]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(ls.stdout.trim(), 'latest');
    const bundle = join(dir, 'bundle');
    const unpack = await runCommand('umoci', ['unpack', '--image', `${small.layoutDir}:latest`, bundle]);
    assert.equal(unpack.code, 0, unpack.stderr);
    const echo = await runCommand(join(bundle, 'rootfs', 'bin', 'echo'), ['hi']);
    assert.equal(echo.stdout, 'hi\n');
  });

  test('skopeo inspects oci:DIR:latest', async (t) => {
    if (!(await which('skopeo'))) return t.skip('skopeo not installed');
    const r = await runCommand('skopeo', ['inspect', `oci:${small.layoutDir}:latest`]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.Digest, small.manifest.digest);
    assert.deepEqual(info.Layers, [small.layers[0]?.digest]);
    assert.equal(info.Architecture, 'amd64');
  });
});
