import { BerthClient, readTar, TarWriter } from '@berth/client';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../cli.js';
import { ExitCode } from '../exit-code.js';
import { engineAvailability, startEngine, type TestEngine } from '@berth/client/testing';
import { humanDuration, humanSize, progressBytes } from './content.js';
import { localRfc3339 } from './leases.js';

/*
 * `berth content`, `berth leases` and `berth images` (local verbs), run
 * in-process against containerd and against berthd.
 */

const engines = await engineAvailability(['content', 'images', 'leases']);
const sha256 = (data: Uint8Array | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

describe('formatting as ctr does', () => {
  it('sizes, ages and times', () => {
    assert.equal(humanSize(423), '423B');
    assert.equal(humanSize(1181), '1.181kB');
    assert.equal(humanSize(2_500_000), '2.5MB');
    assert.equal(progressBytes(706), '706.0 B');
    assert.equal(progressBytes(3 * 1024 * 1024 + 512 * 1024), '3.5 MiB');
    assert.equal(humanDuration(300), 'Less than a second');
    assert.equal(humanDuration(5_000), '5 seconds');
    assert.equal(humanDuration(65_000), 'About a minute');
    assert.equal(humanDuration(3 * 3_600_000), '3 hours');
    assert.equal(humanDuration(3 * 86_400_000), '3 days');
    assert.match(localRfc3339(new Date()), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$/);
  });
});

for (const { name, skip } of engines) {
  describe(`berth content, leases and images on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let dir: string;

    before(async () => {
      engine = await startEngine(name);
      dir = mkdtempSync(join(tmpdir(), 'berth-cli-store-'));
    });
    after(async () => {
      await engine?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** Run the CLI in-process in namespace `ns`, with `stdin` as its standard input. */
    async function berth(ns: string, args: readonly string[], stdin?: Buffer): Promise<Run> {
      let stdout = '';
      let stderr = '';
      const bytes: Buffer[] = [];
      const stdoutStream = new Writable({
        write(chunk: Buffer, _enc, cb) {
          bytes.push(chunk);
          cb();
        },
      });
      const code = await runCli(['--address', engine.address, '--namespace', ns, ...args], {
        stdout: (t) => (stdout += t),
        stderr: (t) => (stderr += t),
        env: {},
        interrupted: () => new AbortController().signal,
        // Binary streams (see commands/content.ts BinaryIO).
        ...{ stdin: Readable.from(stdin ? [stdin] : []), stdoutStream },
      });
      return { code, stdout, stderr, bytes: Buffer.concat(bytes) };
    }
    const ok = (r: Run) => assert.equal(r.code, ExitCode.Ok, r.stderr);

    it('content: ingest from stdin, get, ls, label, active, rm', async () => {
      const data = Buffer.from('blob from stdin\n');
      const d = sha256(data);
      // Rooted, or the first garbage collection (after any deletion) would take it.
      const ingest = await berth(
        'cli-content',
        ['content', 'ingest', 'ref-1', '--expected-digest', d, '--expected-size', String(data.length), '--label', 'containerd.io/gc.root=test'],
        data,
      );
      assert.deepEqual([ingest.code, ingest.stdout, ingest.stderr], [0, '', '']);

      const get = await berth('cli-content', ['content', 'get', d]);
      ok(get);
      assert.deepEqual(get.bytes, data);

      const ls = await berth('cli-content', ['content', 'ls']);
      ok(ls);
      assert.match(ls.stdout, /^DIGEST\s+SIZE\s+AGE\s+LABELS\n/);
      assert.match(ls.stdout, new RegExp(`${d}\\s+16B\\s+(Less than a second|\\d+ seconds)\\s+containerd\\.io/gc\\.root=test\\n`));
      assert.equal((await berth('cli-content', ['content', 'ls', '-q'])).stdout, `${d}\n`);

      const label = await berth('cli-content', ['content', 'label', d, 'b=2', 'a=1']);
      ok(label);
      assert.equal(label.stdout, 'a=1,b=2,containerd.io/gc.root=test\n');
      assert.equal((await berth('cli-content', ['content', 'label', d, 'a='])).stdout, 'b=2,containerd.io/gc.root=test\n');
      const json = JSON.parse((await berth('cli-content', ['content', 'ls', '--json', 'labels.b==2'])).stdout);
      assert.deepEqual(
        json.map((i: { digest: string; labels: object }) => [i.digest, i.labels]),
        [[d, { b: '2', 'containerd.io/gc.root': 'test' }]],
      );
      assert.equal((await berth('cli-content', ['content', 'ls', '-q', 'labels.b==3'])).stdout, '');

      // A wrong digest is refused by the daemon and nothing is stored.
      const bad = await berth('cli-content', ['content', 'ingest', 'ref-2', '--expected-digest', sha256('other')], Buffer.from('x'));
      assert.equal(bad.code, ExitCode.Failed);
      assert.match(bad.stderr, /^berth: .*digest/);
      await berth('cli-content', ['content', 'abort', 'ref-2']);

      // An interrupted ingest shows as active.
      const client = new BerthClient({ address: engine.address, namespace: 'cli-content' });
      const w = await client.content.openWriter('half-done');
      await w.write(Buffer.alloc(2048, 7));
      await w.close();
      client.close();
      const active = await berth('cli-content', ['content', 'active']);
      ok(active);
      assert.match(active.stdout, /^REF\s+SIZE\s+AGE\n/);
      assert.match(active.stdout, /half-done\s+2\.048kB\s+/);
      assert.equal(JSON.parse((await berth('cli-content', ['content', 'active', '--json'])).stdout)[0].offset, 2048);
      assert.equal((await berth('cli-content', ['content', 'abort', 'half-done'])).stdout, 'half-done\n');

      const rm = await berth('cli-content', ['content', 'rm', d, sha256('absent')]);
      assert.equal(rm.code, ExitCode.Ok);
      assert.equal(rm.stdout, `${d}\n`);
      assert.match(rm.stderr, /not found/);
      assert.equal((await berth('cli-content', ['content', 'ls', '-q'])).stdout, '');

      const usage = await berth('cli-content', ['content', 'get', 'not-a-digest']);
      assert.equal(usage.code, ExitCode.Usage);
      assert.match(usage.stderr, /invalid digest "not-a-digest"/);
    });

    it('leases: create, ls, rm', async () => {
      const created = await berth('cli-leases', ['leases', 'create', '--id', 'l1', '--expires', '1h', 'team=x', 'flag']);
      ok(created);
      assert.equal(created.stdout, 'l1\n');
      const generated = (await berth('cli-leases', ['leases', 'create', '-x', '0'])).stdout.trim();
      assert.match(generated, /^\d+-[0-9a-f]+$/);
      const ls = await berth('cli-leases', ['leases', 'ls']);
      ok(ls);
      assert.match(ls.stdout, /^ID\s+CREATED AT\s+LABELS\n/);
      // A bare KEY is an empty label, which containerd does not keep (see parity.test.ts for berthd).
      assert.match(ls.stdout, /\nl1\s+\d{4}-\d\d-\d\dT\S+\s+containerd\.io\/gc\.expire=\S+Z,(flag=,)?team=x\n/);
      assert.match(ls.stdout, new RegExp(`\\n${generated}\\s+\\S+\\s+-\\n`));
      assert.deepEqual((await berth('cli-leases', ['leases', 'ls', '-q', 'id==l1'])).stdout, 'l1\n');
      const dup = await berth('cli-leases', ['leases', 'create', '--id', 'l1']);
      assert.equal(dup.code, ExitCode.Failed);
      assert.match(dup.stderr, /already exists/);
      const rm = await berth('cli-leases', ['leases', 'rm', 'l1', generated, '--sync']);
      ok(rm);
      assert.equal(rm.stdout, `l1\n${generated}\n`);
      assert.equal((await berth('cli-leases', ['leases', 'ls', '-q'])).stdout, '');
      assert.equal((await berth('cli-leases', ['leases', 'create', '--expires', 'soon'])).code, ExitCode.Usage);
    });

    it('images: import, ls, tag, export, re-import, rm --sync', async () => {
      // The archive's one layer is a made-up blob: stored, never unpacked (--no-unpack).
      const archive = await testArchive();
      const file = join(dir, `${name}-in.tar`);
      writeFileSync(file, archive.tar);

      const imported = await berth('cli-images', ['images', 'import', '--no-unpack', file]);
      ok(imported);
      assert.equal(imported.stdout, `docker.io/library/cli:1 ${archive.manifest}\n`);
      // From stdin, with a tag-only OCI ref name and ctr's default prefix.
      // Unpacked by default, as ctr: its made-up layer fails the import, which says the image is stored.
      const unpacked = await berth('cli-images-unpack', ['images', 'import', file]);
      assert.equal(unpacked.code, ExitCode.Failed, unpacked.stderr);
      assert.match(unpacked.stderr, /^berth: docker\.io\/library\/cli:1 is stored, but unpacking it failed:\nberth: .+/m);
      assert.equal((await berth('cli-images-unpack', ['images', 'ls', '-q'])).stdout, 'docker.io/library/cli:1\n');
      const fromStdin = await berth('cli-images', ['images', 'import', '--no-unpack', '-'], archive.tagOnlyTar);
      ok(fromStdin);
      assert.match(fromStdin.stdout, new RegExp(`^import-\\d{4}-\\d\\d-\\d\\d:v2 ${archive.manifest}\\n$`));

      const ls = await berth('cli-images', ['images', 'ls']);
      ok(ls);
      assert.match(ls.stdout, /^REF\s+TYPE\s+DIGEST\s+SIZE\s+PLATFORMS\s+LABELS\n/);
      assert.match(
        ls.stdout,
        new RegExp(`docker\\.io/library/cli:1\\s+application/vnd\\.oci\\.image\\.manifest\\.v1\\+json\\s+${archive.manifest}\\s+${archive.size.replace('.', '\\.')}\\s+linux/amd64\\s+-\\n`),
      );

      const tag = await berth('cli-images', ['images', 'tag', 'docker.io/library/cli:1', 'example.com/cli:a', 'example.com/cli:b']);
      ok(tag);
      assert.equal(tag.stdout, 'example.com/cli:a\nexample.com/cli:b\n');
      assert.equal((await berth('cli-images', ['images', 'tag', 'docker.io/library/cli:1', 'example.com/cli:a'])).code, ExitCode.Failed);
      ok(await berth('cli-images', ['images', 'tag', '--force', 'docker.io/library/cli:1', 'example.com/cli:a']));
      assert.equal(
        (await berth('cli-images', ['images', 'ls', '-q', 'name~=^example.com/'])).stdout,
        'example.com/cli:a\nexample.com/cli:b\n',
      );

      const out = join(dir, `${name}-out.tar`);
      ok(await berth('cli-images', ['images', 'export', out, 'example.com/cli:a']));
      const names: string[] = [];
      for await (const e of readTar(Readable.from([readFileSync(out)]))) names.push(e.name);
      assert.ok(names.includes('index.json') && names.includes('manifest.json') && names.includes('oci-layout'), names.join());
      const toStdout = await berth('cli-images', ['images', 'export', '-', 'example.com/cli:b', '--format', 'docker']);
      ok(toStdout);
      assert.ok(toStdout.bytes.length > 1024);
      const again = await berth('cli-images-2', ['images', 'import', '--no-unpack', '-'], toStdout.bytes);
      ok(again);
      assert.match(again.stdout, /^example\.com\/cli:b sha256:[0-9a-f]{64}\n$/);
      const back = await berth('cli-images-3', ['images', 'import', '--no-unpack', out]);
      assert.equal(back.stdout, `example.com/cli:a ${archive.manifest}\n`);

      const missing = await berth('cli-images', ['images', 'export', join(dir, 'none.tar'), 'example.com/none:1']);
      assert.equal(missing.code, ExitCode.Failed);
      assert.equal(existsSync(join(dir, 'none.tar')), false);
      assert.equal((await berth('cli-images', ['images', 'export', out, 'x', '--format', 'zip'])).code, ExitCode.Usage);

      const hostile = await berth('cli-images', ['images', 'import', '-'], Buffer.from('not a tarball'.repeat(100)));
      assert.equal(hostile.code, ExitCode.Failed);
      assert.match(hostile.stderr, /not a tar archive/);

      const rm = await berth('cli-images', ['images', 'rm', 'example.com/cli:a', 'example.com/cli:b', 'example.com/none:1']);
      ok(rm);
      assert.equal(rm.stdout, 'example.com/cli:a\nexample.com/cli:b\n');
      assert.match(rm.stderr, /example\.com\/none:1: image not found/);
      const rmAll = await berth('cli-images', ['images', 'rm', '--sync', 'docker.io/library/cli:1', fromStdin.stdout.split(' ')[0] ?? '']);
      ok(rmAll);
      assert.equal((await berth('cli-images', ['content', 'ls', '-q'])).stdout, '');
      assert.equal((await berth('cli-images', ['images', 'ls', '-q'])).stdout, '');
    });
  });
}

/** A one-image OCI layout tarball (amd64), built here with the client's tar writer. */
async function testArchive(): Promise<{ tar: Buffer; tagOnlyTar: Buffer; manifest: string; size: string }> {
  const blob = (mediaType: string, data: Buffer | string) => {
    const bytes = Buffer.from(data);
    return { mediaType, digest: sha256(bytes), size: bytes.length, bytes };
  };
  const layer = blob('application/vnd.oci.image.layer.v1.tar+gzip', gzipSync(await tarOf([['hello.txt', Buffer.from('hi\n')]])));
  const config = blob(
    'application/vnd.oci.image.config.v1+json',
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256('x')] } }),
  );
  const desc = (b: typeof layer) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = blob(
    'application/vnd.oci.image.manifest.v1+json',
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: desc(config), layers: [desc(layer)] }),
  );
  const layout = (annotations: Record<string, string>) =>
    tarOf([
      ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
      ...[manifest, config, layer].map((b): [string, Buffer] => [`blobs/sha256/${b.digest.slice(7)}`, b.bytes]),
      ['index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ ...desc(manifest), annotations }] }))],
    ]);
  return {
    tar: await layout({ 'io.containerd.image.name': 'docker.io/library/cli:1', 'org.opencontainers.image.ref.name': '1' }),
    tagOnlyTar: await layout({ 'org.opencontainers.image.ref.name': 'v2' }),
    manifest: manifest.digest,
    size: progressBytes(manifest.size + config.size + layer.size),
  };
}

async function tarOf(files: readonly [string, Buffer][]): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  const tar = new TarWriter(sink);
  for (const [name, data] of files) await tar.file(name, data.length, data);
  await tar.finish();
  return Buffer.concat(parts);
}
