import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tar from 'tar-stream';
import { type BuildResult, buildImage } from './build-image.js';
import { writeDockerArchive } from './docker-archive.js';
import { DEFAULT_BUSYBOX } from './layer-sources.js';
import { writeOciArchive } from './oci-archive.js';
import { PRESETS } from './presets.js';
import { runCommand, which } from './processes.js';

async function untar(path: string): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  extract.end(await readFile(path));
  const out = new Map<string, Buffer>();
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const c of entry) parts.push(c as Buffer);
    out.set(entry.header.name, Buffer.concat(parts));
  }
  return out;
}

const hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('archives', { skip: !existsSync(DEFAULT_BUSYBOX) && `${DEFAULT_BUSYBOX} missing (busybox-static)` }, () => {
  let dir: string;
  let image: BuildResult;
  let ociTar: string;
  let dockerTar: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-archives-'));
    image = await buildImage({
      ...PRESETS.small,
      layers: [...PRESETS.small.layers, { kind: 'files', files: [{ path: 'etc/motd', content: 'hello\n' }] }],
      out: join(dir, 'layout'),
    });
    ociTar = join(dir, 'oci.tar');
    dockerTar = join(dir, 'docker.tar');
    await writeOciArchive(image.layoutDir, ociTar);
    await writeDockerArchive(image.layoutDir, dockerTar);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the OCI archive is the layout, file for file', async () => {
    const files = await untar(ociTar);
    const blobs = [image.manifest, image.config, ...image.layers].map((d) => `blobs/sha256/${d.digest.slice(7)}`).sort();
    assert.deepEqual([...files.keys()].sort(), ['blobs', 'blobs/sha256', ...blobs, 'index.json', 'oci-layout'].sort());
    assert.deepEqual(files.get('index.json'), await readFile(join(image.layoutDir, 'index.json')));
    for (const b of blobs) assert.equal(hex(files.get(b) as Buffer), b.slice('blobs/sha256/'.length));
  });

  test('the docker archive has manifest.json, the config and uncompressed layers named by diff id', async () => {
    const files = await untar(dockerTar);
    const manifest = JSON.parse(files.get('manifest.json')?.toString() ?? '[]');
    const diffIds = image.layers.map((l) => l.diffId.slice(7));
    assert.deepEqual(manifest, [
      {
        Config: `${image.config.digest.slice(7)}.json`,
        RepoTags: ['localhost/berth-test/busybox:latest'],
        Layers: diffIds.map((d) => `${d}/layer.tar`),
      },
    ]);
    assert.equal(hex(files.get(manifest[0].Config) as Buffer), image.config.digest.slice(7));
    for (const d of diffIds) assert.equal(hex(files.get(`${d}/layer.tar`) as Buffer), d);
  });

  test('archives are deterministic', async () => {
    await writeOciArchive(image.layoutDir, join(dir, 'oci2.tar'));
    await writeDockerArchive(image.layoutDir, join(dir, 'docker2.tar'), { repoTags: ['localhost/berth-test/busybox:latest'] });
    assert.equal(hex(await readFile(join(dir, 'oci2.tar'))), hex(await readFile(ociTar)));
    assert.equal(hex(await readFile(join(dir, 'docker2.tar'))), hex(await readFile(dockerTar)));
  });

  test('skopeo reads both archives', async (t) => {
    if (!(await which('skopeo'))) return t.skip('skopeo not installed');
    const oci = await runCommand('skopeo', ['inspect', `oci-archive:${ociTar}:latest`]);
    assert.equal(oci.code, 0, oci.stderr);
    assert.equal(JSON.parse(oci.stdout).Digest, image.manifest.digest);
    const docker = await runCommand('skopeo', ['inspect', '--config', `docker-archive:${dockerTar}`]);
    assert.equal(docker.code, 0, docker.stderr);
    assert.deepEqual(
      JSON.parse(docker.stdout).rootfs.diff_ids,
      image.layers.map((l) => l.diffId),
    );
  });
});
