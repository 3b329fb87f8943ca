import { type ContentInfo, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { BerthClient } from '../berth-client.js';
import { engineAvailability, startEngine, type TestEngine } from '../test-engines.js';
import { MAX_JSON_BYTES } from './archive-importer.js';
import { GcRef, MediaType } from './media-types.js';
import { readTar } from './tar.js';
import {
  BufferSink,
  blob,
  blobFile,
  descriptor,
  dockerArchive,
  hex,
  imageFiles,
  indexJsonFile,
  makeImage,
  makeIndex,
  OCI_LAYOUT,
  ociArchive,
  sha256,
  type TestImage,
  tarOf,
} from './test-images.js';

const engines = await engineAvailability(['content', 'images', 'leases']);
const hasCtr = !spawnSync('ctr', ['--version']).error;

/** Labels as JSON with sorted keys: daemons return maps in any order. */
const sortedJson = (labels: Readonly<Record<string, string>>) => JSON.stringify(Object.fromEntries(Object.entries(labels).sort()));

const stream = (buf: Buffer) => Readable.from([buf.subarray(0, 700), buf.subarray(700)]);

async function entries(archive: Buffer): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for await (const e of readTar(Readable.from([archive]))) {
    const parts: Buffer[] = [];
    for await (const p of e.body) parts.push(p);
    out.set(e.name, Buffer.concat(parts));
  }
  return out;
}

for (const { name: engineName, skip } of engines) {
  describe(`image archives on ${engineName}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;
    let dir: string;
    let image: TestImage;

    /** ctr against this engine, in `ns` (asynchronously: berthd may be serving from this very process). */
    const ctrOnce = (ns: string, args: string[], input?: Buffer) =>
      new Promise<Buffer>((resolve, reject) => {
        const child = spawn('ctr', ['-a', engine.address, '-n', ns, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
        const out: Buffer[] = [];
        let err = '';
        child.stdout.on('data', (d: Buffer) => out.push(d));
        child.stderr.on('data', (d: Buffer) => (err += d));
        child.on('error', reject);
        child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`ctr ${args.join(' ')}: exit ${code}: ${err}`))));
        child.stdin.end(input);
      });
    const ctr = async (ns: string, args: string[], input?: Buffer) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await ctrOnce(ns, args, input);
        } catch (err) {
          // berthd refuses some of the random lease ids ctr makes (parity.test.ts); try again with another.
          if (attempt >= 5 || !/lease\.id: identifier/.test((err as Error).message)) throw err;
        }
      }
    };
    const snapshot = async (c: BerthClient) => ({
      content: (await c.content.list()).map((i: ContentInfo) => `${i.digest} ${i.size} ${sortedJson(i.labels)}`).sort(),
      images: (await c.images.list()).map((i) => `${i.name} ${i.target.digest}`).sort(),
      ingests: (await c.content.listStatuses()).map((s) => s.ref),
      leases: (await c.leases.list()).map((l) => l.id),
    });

    before(async () => {
      engine = await startEngine(engineName);
      client = new BerthClient({ address: engine.address, namespace: 'berth-archive-test' });
      dir = mkdtempSync(join(tmpdir(), 'berth-archive-'));
      image = await makeImage();
    });
    after(async () => {
      client?.close();
      await engine?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('imports an OCI layout, labelling content for GC as containerd does', async () => {
      const c = client.withNamespace('oci-import');
      const images = await c.images.importArchive(stream(await ociArchive(image, 'docker.io/library/hello:1')));
      assert.deepEqual(
        images.map((i) => [i.name, i.target.digest, i.target.mediaType]),
        [['docker.io/library/hello:1', image.manifest.digest, MediaType.ociManifest]],
      );
      assert.deepEqual((await c.content.info(image.manifest.digest)).labels, {
        [GcRef.config]: image.config.digest,
        [`${GcRef.layerPrefix}0`]: image.layer.digest,
      });
      for (const b of [image.config, image.layer]) assert.equal((await c.content.info(b.digest)).size, b.size);
      // No lease or ingest left behind; everything reachable from the image.
      assert.deepEqual(await c.leases.list(), []);
      assert.deepEqual(await c.content.listStatuses(), []);
      assert.equal((await c.content.list()).length, 3);
      // Importing again changes nothing.
      await c.images.importArchive(stream(await ociArchive(image, 'docker.io/library/hello:1')));
      assert.equal((await c.content.list()).length, 3);
    });

    it('imports a docker save archive into the same digests as containerd', async () => {
      const c = client.withNamespace('docker-import');
      const archive = await dockerArchive(image, ['hello:latest', 'example.com/team/hello:2']);
      const images = await c.images.importArchive(stream(archive));
      const manifest = Buffer.from(
        `{"schemaVersion":2,"mediaType":"${MediaType.dockerManifest}","config":{"mediaType":"${MediaType.dockerConfig}","digest":"${image.config.digest}","size":${image.config.size}},"layers":[{"mediaType":"${MediaType.dockerLayerGzip}","digest":"${image.layer.digest}","size":${image.layer.size}}]}`,
      );
      assert.deepEqual(
        images.map((i) => [i.name, i.target.digest, i.target.mediaType]),
        [
          ['docker.io/library/hello:latest', sha256(manifest), MediaType.dockerManifest],
          ['example.com/team/hello:2', sha256(manifest), MediaType.dockerManifest],
        ],
      );
      assert.deepEqual(images[0]?.target.annotations, {
        'io.containerd.image.name': 'docker.io/library/hello:latest',
        'org.opencontainers.image.ref.name': 'latest',
      });
      assert.deepEqual(await c.content.readAll(sha256(manifest)), manifest);
      assert.deepEqual((await c.content.info(sha256(manifest))).labels, {
        [GcRef.config]: image.config.digest,
        [`${GcRef.layerPrefix}0`]: image.layer.digest,
      });
      // The legacy <id>/json and VERSION files are not kept.
      assert.deepEqual((await c.content.list()).map((i) => i.digest).sort(), [sha256(manifest), image.config.digest, image.layer.digest].sort());

      // An uncompressed layer is typed as such.
      const plain = await makeImage({ gzip: false, content: 'plain' });
      const [img] = await c.images.importArchive(stream(await dockerArchive(plain, ['plain:1'])));
      const m = JSON.parse((await c.content.readAll(img?.target.digest ?? '')).toString());
      assert.equal(m.layers[0].mediaType, MediaType.dockerLayer);

      // docker save links a layer two images share; both resolve to it.
      const twin = await makeImage({ content: 'hello from berth\n', architecture: 'arm64' });
      const linked = await tarOf([
        { name: 'a/layer.tar', data: image.layer.bytes },
        { name: 'b/layer.tar', type: 'symlink', target: '../a/layer.tar' },
        { name: `${hex(image.config.digest)}.json`, data: image.config.bytes },
        { name: `${hex(twin.config.digest)}.json`, data: twin.config.bytes },
        {
          name: 'manifest.json',
          data: JSON.stringify([
            { Config: `${hex(image.config.digest)}.json`, RepoTags: ['one:1'], Layers: ['a/layer.tar'] },
            { Config: `${hex(twin.config.digest)}.json`, RepoTags: ['two:1'], Layers: ['b/layer.tar'] },
          ]),
        },
      ]);
      const pair = await c.images.importArchive(stream(linked));
      assert.deepEqual(
        pair.map((i) => i.name),
        ['docker.io/library/one:1', 'docker.io/library/two:1'],
      );
      const second = JSON.parse((await c.content.readAll(pair[1]?.target.digest ?? '')).toString());
      assert.equal(second.layers[0].digest, image.layer.digest);

      if (hasCtr) {
        const file = join(dir, 'docker.tar');
        writeFileSync(file, archive);
        await ctr('docker-import-ctr', ['images', 'import', '--no-unpack', file]);
        const listed = (await ctr('docker-import-ctr', ['images', 'ls', '-q'])).toString().trim().split('\n').sort();
        assert.deepEqual(listed, ['docker.io/library/hello:latest', 'example.com/team/hello:2']);
        const theirs = await client.withNamespace('docker-import-ctr').images.get('docker.io/library/hello:latest');
        assert.equal(theirs.target.digest, sha256(manifest));
        assert.deepEqual(theirs.target.annotations, images[0]?.target.annotations);
      }
    });

    it('takes the chosen platform of a multi-platform index, absent others included', async () => {
      const c = client.withNamespace('multi-platform');
      const arm = await makeImage({ architecture: 'arm64', content: 'arm' });
      const index = makeIndex([image, arm]);
      // Only the amd64 image's blobs are in the archive.
      const archive = await tarOf([OCI_LAYOUT, blobFile(index), ...imageFiles(image), indexJsonFile([{ blob: index, name: 'example.com/multi:1' }])]);
      const [img] = await c.images.importArchive(stream(archive), { platform: 'linux/amd64' });
      assert.equal(img?.target.digest, index.digest);
      assert.deepEqual((await c.content.info(index.digest)).labels, { [`${GcRef.manifestPrefix}0`]: image.manifest.digest });
      await assert.rejects(c.images.importArchive(stream(archive), { allPlatforms: true }), (err: Error) => {
        assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
        assert.match(err.message, new RegExp(`blob ${arm.manifest.digest} .* is missing from the archive`));
        return true;
      });
      await assert.rejects(c.images.importArchive(stream(archive), { platform: 'linux/s390x' }), /no manifest for linux\/s390x/);
      // With every blob there, all platforms come in and are labelled.
      const full = await tarOf([
        OCI_LAYOUT,
        blobFile(index),
        ...imageFiles(image),
        ...imageFiles(arm),
        indexJsonFile([{ blob: index, name: 'example.com/multi:1' }]),
      ]);
      await c.images.importArchive(stream(full), { allPlatforms: true });
      assert.deepEqual((await c.content.info(index.digest)).labels, {
        [`${GcRef.manifestPrefix}0`]: image.manifest.digest,
        [`${GcRef.manifestPrefix}1`]: arm.manifest.digest,
      });
      assert.equal((await c.content.info(arm.layer.digest)).size, arm.layer.size);
    });

    it('names images by prefix and index name, as ctr import does', async () => {
      const c = client.withNamespace('naming');
      const archive = await tarOf([OCI_LAYOUT, ...imageFiles(image), indexJsonFile([{ blob: image.manifest, refName: 'v1' }])]);
      // containerd's client takes a bare ref name as it is; ctr adds a prefix.
      assert.deepEqual((await c.images.importArchive(stream(archive))).map((i) => i.name), ['v1']);
      const anonymous = await tarOf([OCI_LAYOUT, ...imageFiles(image), indexJsonFile([{ blob: image.manifest }])]);
      await assert.rejects(c.images.importArchive(stream(anonymous)), /names no image/);
      const named = await c.images.importArchive(stream(archive), { namePrefix: 'example.com/base', indexName: 'example.com/idx:1' });
      assert.deepEqual(
        named.map((i) => [i.name, i.target.mediaType]),
        [
          ['example.com/idx:1', MediaType.ociIndex],
          ['example.com/base:v1', MediaType.ociManifest],
        ],
      );
      assert.deepEqual((await c.content.info(named[0]?.target.digest ?? '')).labels, { [`${GcRef.manifestPrefix}0`]: image.manifest.digest });
      const full = await tarOf([OCI_LAYOUT, ...imageFiles(image), indexJsonFile([{ blob: image.manifest, name: 'other.io/x:1', refName: 'x' }])]);
      assert.deepEqual(await c.images.importArchive(stream(full), { namePrefix: 'example.com/base', onlyPrefixed: true }).then((i) => i.length), 1);
    });

    it('imports inside the caller’s lease when there is one', async () => {
      const c = client.withNamespace('in-lease');
      await c.withLease(async (leased, id) => {
        await leased.images.importArchive(stream(await ociArchive(image, 'example.com/leased:1')));
        const held = (await c.leases.listResources(id)).map((r) => r.id);
        for (const b of [image.manifest, image.config, image.layer]) assert.ok(held.includes(b.digest), b.digest);
        assert.deepEqual(
          (await c.leases.list()).map((l) => l.id),
          [id],
        );
      });
      assert.deepEqual(await c.leases.list(), []);
      assert.equal((await c.images.get('example.com/leased:1')).target.digest, image.manifest.digest);
    });

    it('reads gzipped archives and archives written by GNU tar', async () => {
      const c = client.withNamespace('gzip');
      const [img] = await c.images.importArchive(stream(gzipSync(await ociArchive(image, 'example.com/gz:1'))));
      assert.equal(img?.target.digest, image.manifest.digest);
      const tree = join(dir, 'gnu');
      rmSync(tree, { recursive: true, force: true });
      for (const f of [OCI_LAYOUT, ...imageFiles(image), indexJsonFile([{ blob: image.manifest, name: 'example.com/gnu:1' }])]) {
        const path = join(tree, f.name);
        spawnSync('mkdir', ['-p', join(path, '..')]);
        writeFileSync(path, f.data ?? '');
      }
      const tarFile = join(dir, 'gnu.tar');
      const r = spawnSync('tar', ['-C', tree, '--format=posix', '-cf', tarFile, '.']);
      assert.equal(r.status, 0, String(r.stderr));
      const [gnu] = await c.images.importArchive(tarFile);
      assert.equal(gnu?.name, 'example.com/gnu:1');
      await assert.rejects(c.images.importArchive(join(dir, 'absent.tar')), NotFoundError);
    });

    describe('refuses hostile or broken archives, leaving nothing behind', () => {
      const ns = 'hostile';
      const cases: [string, () => Promise<Buffer>, RegExp | (() => RegExp)][] = [
        ['an oversized index.json', async () => tarOf([OCI_LAYOUT, ...imageFiles(image), { name: 'index.json', data: `{"manifests":[]${' '.repeat(MAX_JSON_BYTES)}}` }]), /index\.json is \d+ bytes; refusing JSON over 4194304/],
        ['malformed index.json', async () => tarOf([OCI_LAYOUT, ...imageFiles(image), { name: 'index.json', data: '{"manifests": [' }]), /index\.json: malformed JSON/],
        [
          'a malformed manifest',
          async () => {
            const bad = blob(MediaType.ociManifest, '{"schemaVersion":2,"config":');
            return tarOf([OCI_LAYOUT, blobFile(bad), blobFile(image.config), blobFile(image.layer), indexJsonFile([{ blob: bad, name: 'example.com/bad:1' }])]);
          },
          /malformed JSON/,
        ],
        [
          'an oversized manifest',
          async () => {
            const big = blob(MediaType.ociManifest, JSON.stringify({ schemaVersion: 2, pad: 'x'.repeat(MAX_JSON_BYTES) }));
            return tarOf([OCI_LAYOUT, blobFile(big), indexJsonFile([{ blob: big, name: 'example.com/big:1' }])]);
          },
          /refusing JSON over 4194304 bytes/,
        ],
        ['a ../ entry', async () => tarOf([OCI_LAYOUT, { name: '../evil', data: 'x' }, ...imageFiles(image)]), /"\.\.\/evil": "\.\." in path refused/],
        ['a nested ../ entry', async () => tarOf([OCI_LAYOUT, { name: 'blobs/../../evil', data: 'x' }]), /"\.\." in path refused/],
        ['an absolute entry', async () => tarOf([{ name: '/etc/evil', data: 'x' }]), /"\/etc\/evil": absolute path refused/],
        [
          'a blob whose content does not match its name',
          async () =>
            tarOf([
              OCI_LAYOUT,
              blobFile(image.manifest),
              blobFile(image.config),
              { name: `blobs/sha256/${hex(image.layer.digest)}`, data: Buffer.from('tampered') },
              indexJsonFile([{ blob: image.manifest, name: 'example.com/tampered:1' }]),
            ]),
          () => new RegExp(`blobs/sha256/${hex(image.layer.digest)}: content digest ${sha256('tampered')} does not match its name`),
        ],
        [
          'a missing layer',
          async () => tarOf([OCI_LAYOUT, blobFile(image.manifest), blobFile(image.config), indexJsonFile([{ blob: image.manifest, name: 'example.com/m:1' }])]),
          () => new RegExp(`layers\\[0\\]: blob ${image.layer.digest} \\(${MediaType.ociLayerGzip.replace(/[.+]/g, '\\$&')}\\) is missing from the archive`),
        ],
        [
          'a missing manifest',
          async () => tarOf([OCI_LAYOUT, blobFile(image.config), indexJsonFile([{ blob: image.manifest, name: 'example.com/m:1' }])]),
          /is missing from the archive/,
        ],
        [
          'an unknown media type',
          async () => {
            const odd = blob('application/vnd.example.thing+json', '{}');
            return tarOf([OCI_LAYOUT, blobFile(odd), indexJsonFile([{ blob: odd, name: 'example.com/odd:1' }])]);
          },
          /unsupported media type application\/vnd\.example\.thing\+json/,
        ],
        [
          'a size that disagrees with the descriptor',
          async () => {
            const liar = blob(
              MediaType.ociManifest,
              JSON.stringify({ schemaVersion: 2, config: descriptor(image.config), layers: [{ ...descriptor(image.layer), size: 5 }] }),
            );
            return tarOf([OCI_LAYOUT, blobFile(liar), ...imageFiles(image).slice(1), indexJsonFile([{ blob: liar, name: 'example.com/liar:1' }])]);
          },
          /is \d+ bytes in the archive, 5 in its descriptor/,
        ],
        ['an unsupported layout version', async () => tarOf([{ name: 'oci-layout', data: '{"imageLayoutVersion":"9"}' }]), /unsupported imageLayoutVersion "9"/],
        ['a tar with neither layout nor manifest.json', async () => tarOf([{ name: 'readme', data: 'hi' }]), /unrecognized image format/],
        ['something that is not a tar', async () => Buffer.from('x'.repeat(2000)), /not a tar archive/],
        ['a truncated tar', async () => (await ociArchive(image, 'example.com/t:1')).subarray(0, 1800), /truncated/],
        [
          'a docker archive with a missing layer',
          async () => {
            const a = await entries(await dockerArchive(image, ['gone:1']));
            return tarOf([...a].filter(([n]) => !n.endsWith('layer.tar')).map(([name, data]) => ({ name, data })));
          },
          /manifest\.json: layer 0 ".*layer\.tar" not found in the archive/,
        ],
        [
          'a docker archive with a malformed config',
          async () =>
            tarOf([
              { name: `${hex(sha256('{'))}.json`, data: '{' },
              { name: 'manifest.json', data: JSON.stringify([{ Config: `${hex(sha256('{'))}.json`, RepoTags: ['x:1'], Layers: [] }]) },
            ]),
          /image config .*: malformed JSON/,
        ],
        [
          'a docker archive whose symlink leaves the archive',
          async () => {
            const t = await tarOf([{ name: 'manifest.json', data: '[]' }]);
            // Patch the one entry into a symlink to ../../etc/passwd by hand: TarWriter only writes files.
            const h = Buffer.from(t.subarray(0, 512));
            h.fill(0, 0, 100).write('a/layer.tar', 0);
            h.write('2', 156);
            h.fill(0, 124, 136).write('00000000000\0', 124);
            h.write('../../etc/passwd', 157);
            h.fill(0x20, 148, 156);
            let sum = 0;
            for (const b of h) sum += b;
            h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
            return Buffer.concat([h, Buffer.alloc(1024)]);
          },
          /link "\.\.\/\.\.\/etc\/passwd" points outside the archive/,
        ],
      ];

      let baseline: Awaited<ReturnType<typeof snapshot>>;
      before(async () => {
        // Something already there, that a failed import must leave exactly as it was.
        await client.withNamespace(ns).images.importArchive(stream(await ociArchive(image, 'example.com/kept:1')));
        baseline = await snapshot(client.withNamespace(ns));
      });

      for (const [what, build, message] of cases) {
        it(what, async () => {
          const c = client.withNamespace(ns);
          await assert.rejects(c.images.importArchive(stream(await build())), (err: Error) => {
            assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
            assert.match(err.message, typeof message === 'function' ? message() : message);
            return true;
          });
          assert.deepEqual(await snapshot(c), baseline);
        });
      }
    });

    it('exports an OCI layout that imports into another namespace with the same digests', async () => {
      const src = client.withNamespace('export-src');
      const arm = await makeImage({ architecture: 'arm64', content: 'arm' });
      const index = makeIndex([image, arm]);
      await src.images.importArchive(
        stream(
          await tarOf([
            OCI_LAYOUT,
            blobFile(index),
            ...imageFiles(image),
            ...imageFiles(arm),
            indexJsonFile([
              { blob: index, name: 'example.com/multi:1' },
              { blob: image.manifest, name: 'example.com/single:1' },
            ]),
          ]),
        ),
        { allPlatforms: true },
      );
      const sink = new BufferSink();
      await src.images.exportArchive(['example.com/multi:1', 'example.com/single:1'], sink, { allPlatforms: true });
      const files = await entries(sink.buffer);
      assert.deepEqual(
        [...files.keys()],
        [
          'blobs/',
          'blobs/sha256/',
          ...[index, image.manifest, image.config, image.layer, arm.manifest, arm.config, arm.layer].map((b) => `blobs/sha256/${hex(b.digest)}`).sort(),
          'index.json',
          'manifest.json',
          'oci-layout',
        ],
      );
      assert.equal(
        files.get('index.json')?.toString(),
        `{"schemaVersion":2,"manifests":[{"mediaType":"${MediaType.ociIndex}","digest":"${index.digest}","size":${index.size},"annotations":{"io.containerd.image.name":"example.com/multi:1","org.opencontainers.image.ref.name":"1"}},{"mediaType":"${MediaType.ociManifest}","digest":"${image.manifest.digest}","size":${image.manifest.size},"annotations":{"io.containerd.image.name":"example.com/single:1","org.opencontainers.image.ref.name":"1"}}]}`,
      );
      assert.deepEqual(JSON.parse(files.get('manifest.json')?.toString() ?? ''), [
        {
          Config: `blobs/sha256/${hex(image.config.digest)}`,
          RepoTags: ['example.com/multi:1', 'example.com/single:1'],
          Layers: [`blobs/sha256/${hex(image.layer.digest)}`],
        },
      ]);

      const dst = client.withNamespace('export-dst');
      const imported = await dst.images.importArchive(stream(sink.buffer), { allPlatforms: true });
      assert.deepEqual(
        imported.map((i) => [i.name, i.target.digest]),
        [
          ['example.com/multi:1', index.digest],
          ['example.com/single:1', image.manifest.digest],
        ],
      );
      const digests = async (c: BerthClient) => (await c.content.list()).map((i) => `${i.digest} ${sortedJson(i.labels)}`).sort();
      assert.deepEqual(await digests(dst), await digests(src));

      // Host platform only (the default, as ctr): the other platform's blobs stay out.
      const one = new BufferSink();
      await src.images.exportArchive(['example.com/multi:1'], one, { platform: 'linux/arm64', skipManifestJson: true });
      const oneFiles = [...(await entries(one.buffer)).keys()];
      assert.ok(oneFiles.includes(`blobs/sha256/${hex(arm.layer.digest)}`));
      assert.ok(!oneFiles.includes(`blobs/sha256/${hex(image.layer.digest)}`));
      assert.ok(!oneFiles.includes('manifest.json'));
      const partial = client.withNamespace('export-partial');
      await partial.images.importArchive(stream(one.buffer), { platform: 'linux/arm64' });
      await assert.rejects(partial.images.exportArchive(['example.com/multi:1'], new BufferSink(), { allPlatforms: true }), NotFoundError);
      await assert.rejects(src.images.exportArchive(['example.com/none:1'], new BufferSink()), NotFoundError);
    });

    it('exports the docker save layout, which imports to the same config and layers', async () => {
      const src = client.withNamespace('export-docker');
      await src.images.importArchive(stream(await ociArchive(image, 'docker.io/library/hello:1')));
      const sink = new BufferSink();
      await src.images.exportArchive(['docker.io/library/hello:1'], sink, { format: 'docker' });
      const files = await entries(sink.buffer);
      assert.deepEqual(JSON.parse(files.get('manifest.json')?.toString() ?? ''), [
        { Config: `${hex(image.config.digest)}.json`, RepoTags: ['hello:1'], Layers: [`${hex(image.layer.digest)}/layer.tar`] },
      ]);
      const dst = client.withNamespace('export-docker-dst');
      const [img] = await dst.images.importArchive(stream(sink.buffer));
      assert.equal(img?.name, 'docker.io/library/hello:1');
      const m = JSON.parse((await dst.content.readAll(img?.target.digest ?? '')).toString());
      assert.equal(m.config.digest, image.config.digest);
      assert.deepEqual(
        m.layers.map((l: { digest: string; mediaType: string }) => [l.digest, l.mediaType]),
        [[image.layer.digest, MediaType.dockerLayerGzip]],
      );
    });

    it('round-trips with ctr: its export imports here, our export imports there, byte for byte alike', { skip: !hasCtr && 'ctr is not installed' }, async () => {
      const src = client.withNamespace('ctr-src');
      await src.images.importArchive(stream(await dockerArchive(image, ['hello:latest'])));
      const theirs = await ctr('ctr-src', ['images', 'export', '-', 'docker.io/library/hello:latest']);
      const ours = new BufferSink();
      await src.images.exportArchive(['docker.io/library/hello:latest'], ours);
      const a = await entries(theirs);
      const b = await entries(ours.buffer);
      assert.deepEqual([...b.keys()], [...a.keys()]);
      for (const [n, data] of a) assert.deepEqual(b.get(n), data, n);

      const [back] = await client.withNamespace('ctr-back').images.importArchive(stream(theirs));
      assert.equal(back?.target.digest, (await src.images.get('docker.io/library/hello:latest')).target.digest);
      await ctr('ctr-there', ['images', 'import', '--no-unpack', '-'], ours.buffer);
      assert.match((await ctr('ctr-there', ['images', 'ls', '-q'])).toString(), /docker\.io\/library\/hello:latest/);
    });
  });
}

describe('archive reading without a daemon', () => {
  it('reads its own tar output and GNU tar PAX long names', async () => {
    const long = `${'d'.repeat(120)}/file`;
    const tar = await tarOf([{ name: long, data: 'long' }, { name: 'short', data: Buffer.alloc(1000, 1) }]);
    const files = await entries(tar);
    assert.equal(files.get(long)?.toString(), 'long');
    assert.equal(files.get('short')?.length, 1000);
    const dir = mkdtempSync(join(tmpdir(), 'berth-tar-'));
    try {
      spawnSync('mkdir', ['-p', join(dir, 'src', 'e'.repeat(150))]);
      writeFileSync(join(dir, 'src', 'e'.repeat(150), 'f'), 'gnu');
      for (const format of ['posix', 'gnu', 'ustar']) {
        const out = join(dir, `${format}.tar`);
        const r = spawnSync('tar', ['-C', join(dir, 'src'), `--format=${format}`, '-cf', out, '.']);
        if (format === 'ustar') continue; // ustar cannot hold the name; GNU tar says so
        assert.equal(r.status, 0, String(r.stderr));
        const got = await entries(readFileSync(out));
        assert.equal(got.get(`./${'e'.repeat(150)}/f`)?.toString(), 'gnu', format);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
