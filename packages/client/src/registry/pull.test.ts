import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BerthClient } from '../berth-client.js';
import { ContentClient } from '../content-client.js';
import { ImagesClient } from '../images-client.js';
import { LeasesClient } from '../leases-client.js';
import { engineAvailability, startEngine, type TestEngine } from '../test-engines.js';
import { MediaType } from './media-types.js';
import type { TransferProgress } from './progress.js';
import { pull } from './pull.js';
import { push } from './push.js';
import { DigestMismatchError, RegistryError } from './registry-error.js';
import { type BuiltImage, buildImage, pushBuilt, skopeoDigest, skopeoPush } from './test-image.js';
import {
  haveHtpasswd,
  haveRegistryTools,
  startProxy,
  startRegistry,
  startTokenServer,
  type TestRegistry,
  type TokenServer,
} from './test-registry.js';

/*
 * pull and push end to end: a real docker-registry on 127.0.0.1 (through a
 * recording, cutting or corrupting proxy where a case needs one), and a real
 * daemon, each run as its own process on private folders: containerd 1.6
 * (the reference) and berthd. The same cases run on both.
 */

const skip = haveRegistryTools() ? false : 'needs docker-registry, skopeo and openssl';
const engines = await engineAvailability(['content', 'images', 'leases']);
const run = promisify(execFile);

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64' };

interface Fixture {
  work: string;
  single: BuiltImage;
  multi: BuiltImage;
  /** Images of their own for the cases that must download (a daemon shares blobs it has across namespaces). */
  cut: BuiltImage;
  corrupt: BuiltImage;
  leased: BuiltImage;
  dropped: BuiltImage;
  docker: BuiltImage;
  reg: TestRegistry;
  basic?: TestRegistry;
  tokens: TokenServer;
  bearer: TestRegistry;
}

let fixture: Fixture | undefined;
let users = 0;

/** Registries and images shared by both engines' suites, made on first use and gone when the last suite ends. */
async function fixtures(): Promise<Fixture> {
  users++;
  if (fixture) return fixture;
  const work = mkdtempSync(join(tmpdir(), 'berth-pull-'));
  const started: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => {
    started.push(x);
    return x;
  };
  try {
    const single = buildImage(join(work, 'single'), { randomBytes: 3 * 1024 * 1024, randomLayers: 3 });
    const multi = buildImage(join(work, 'multi'), { platforms: [amd64, arm64], randomBytes: 64 * 1024 });
    const cut = buildImage(join(work, 'cut'), { randomBytes: 1024 * 1024 });
    const corrupt = buildImage(join(work, 'corrupt'), { randomBytes: 256 * 1024 });
    const leased = buildImage(join(work, 'leased'), { randomBytes: 1024 * 1024 });
    const dropped = buildImage(join(work, 'dropped'), { randomBytes: 1024 * 1024 });
    const docker = buildImage(join(work, 'docker'), { platforms: [amd64, arm64], docker: true });
    const reg = track(await startRegistry());
    for (const [img, repo] of [[single, 'single'], [multi, 'multi'], [cut, 'cut'], [corrupt, 'corrupt'], [leased, 'leased'], [dropped, 'dropped']] as const) {
      await skopeoPush(img, `${reg.host}/test/${repo}:v1`);
    }
    // skopeo reads only OCI media types from a layout.
    await pushBuilt(docker, reg.host, 'test/docker', 'v1');
    let basic: TestRegistry | undefined;
    if (haveHtpasswd()) {
      basic = track(await startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } }));
      await skopeoPush(single, `${basic.host}/private/single:v1`, { creds: 'alice:s3cret' });
    }
    const tokens = track(await startTokenServer({ users: { bob: 'hunter2' } }));
    const bearer = track(await startRegistry({ token: tokens }));
    await skopeoPush(single, `${bearer.host}/tok/single:v1`, { creds: 'bob:hunter2' });
    fixture = { work, single, multi, cut, corrupt, leased, dropped, docker, reg, ...(basic ? { basic } : {}), tokens, bearer };
    return fixture;
  } catch (err) {
    for (const x of started.reverse()) await x.close().catch(() => {});
    rmSync(work, { recursive: true, force: true });
    throw err;
  }
}

async function releaseFixtures(): Promise<void> {
  if (--users > 0 || !fixture) return;
  const f = fixture;
  fixture = undefined;
  await f.reg.close();
  await f.basic?.close();
  await f.bearer.close();
  await f.tokens.close();
  rmSync(f.work, { recursive: true, force: true });
}

let nsCounter = 0;

for (const e of engines) {
  describe(`pull and push with ${e.name}`, { skip: skip || e.skip || false }, () => {
    let engine: TestEngine;
    let f: Fixture;
    const clients: BerthClient[] = [];

    before(async () => {
      f = await fixtures();
      engine = await startEngine(e.name);
    });
    after(async () => {
      for (const c of clients) c.close();
      await engine?.close();
      await releaseFixtures();
    });

    /** The real ctr against this engine. */
    const ctr = async (ns: string, ...args: string[]) => (await run('ctr', ['-a', engine.address, '-n', ns, ...args], { timeout: 60_000 })).stdout;

    /** A fresh namespace per case, so that one case's content is not another's "exists". */
    const fresh = (): { ns: string; client: BerthClient; content: ContentClient; images: ImagesClient; leases: LeasesClient } => {
      const ns = `pull-${process.pid}-${++nsCounter}`;
      const client = new BerthClient({ address: engine.address, namespace: ns });
      clients.push(client);
      return { ns, client, content: new ContentClient(client.context), images: new ImagesClient(client.context), leases: new LeasesClient(client.context) };
    };

    it('pulls an image: the image record, labelled content, no lease left, as ctr sees it', async (t) => {
      const { ns, client, content, leases } = fresh();
      const ref = `${f.reg.host}/test/single:v1`;
      const events: TransferProgress[] = [];
      const t0 = performance.now();
      const result = await pull(client, ref, { plainHttp: true, onProgress: (p) => events.push(p) });
      const ms = performance.now() - t0;
      const m = f.single.manifests[0];
      assert.ok(m);
      assert.equal(result.image.name, ref);
      assert.deepEqual(result.image.target, f.single.target);
      assert.deepEqual(result.manifests, [m.manifest]);

      const images = await ctr(ns, 'images', 'ls');
      assert.match(images, new RegExp(`${ref.replace(/\./g, '\\.')}\\s+${MediaType.ociManifest.replace(/[.+]/g, '\\$&')}\\s+${m.manifest.digest}`));
      const ls = await ctr(ns, 'content', 'ls');
      for (const b of [m.manifest, m.config, ...m.layers]) assert.ok(ls.includes(b.digest), `${b.digest} in ctr content ls`);

      const manifestInfo = await content.info(m.manifest.digest);
      const source = 'containerd.io/distribution.source.127.0.0.1';
      assert.deepEqual(manifestInfo.labels, {
        'containerd.io/gc.ref.content.config': m.config.digest,
        ...Object.fromEntries(m.layers.map((l, i) => [`containerd.io/gc.ref.content.l.${i}`, l.digest])),
        [source]: 'test/single',
      });
      for (const b of [m.config, ...m.layers]) assert.deepEqual((await content.info(b.digest)).labels, { [source]: 'test/single' });
      assert.deepEqual(await leases.list(), [], 'the pull’s lease is gone');
      assert.deepEqual(await content.listStatuses(), [], 'no ingest left');

      const done = events.filter((p) => p.status === 'done');
      assert.deepEqual(new Set(done.map((p) => p.digest)), new Set([m.manifest, m.config, ...m.layers].map((b) => b.digest)));
      assert.ok(done.every((p) => p.offset === p.total && p.rate >= 0));
      assert.equal(result.bytesFetched, [m.manifest, m.config, ...m.layers].reduce((n, b) => n + b.size, 0));
      const mib = result.bytesFetched / 1024 / 1024;
      t.diagnostic(`${e.name}: pulled ${mib.toFixed(1)} MiB in ${ms.toFixed(0)} ms`);

      // Again: everything exists, nothing is downloaded, the source label is kept.
      const again = await pull(client, ref, { plainHttp: true });
      assert.equal(again.bytesFetched, 0);
      assert.equal((await content.info(m.config.digest)).labels[source], 'test/single');
    });

    it('pulls the same blobs from a second repository: the distribution source lists both', async () => {
      const { client, content } = fresh();
      await pull(client, `${f.reg.host}/test/single:v1`, { plainHttp: true });
      // Push a copy (server-side, with skopeo) then pull it from there.
      await skopeoPush(f.single, `${f.reg.host}/copy/single:v1`);
      await pull(client, `${f.reg.host}/copy/single:v1`, { plainHttp: true });
      const layer = f.single.manifests[0]?.layers[0];
      assert.ok(layer);
      assert.equal((await content.info(layer.digest)).labels['containerd.io/distribution.source.127.0.0.1'], 'copy/single,test/single');
    });

    it('chooses the platform from an index, or takes all of them', async () => {
      const { client, content } = fresh();
      const ref = `${f.reg.host}/test/multi:v1`;
      const [mAmd, mArm] = f.multi.manifests;
      assert.ok(mAmd && mArm);
      const arm = await pull(client, ref, { plainHttp: true, platform: 'linux/arm64' });
      assert.deepEqual(arm.image.target, f.multi.target);
      assert.deepEqual(arm.manifests, [mArm.manifest]);
      const indexInfo = await content.info(f.multi.target.digest);
      assert.equal(indexInfo.labels['containerd.io/gc.ref.content.m.0'], mAmd.manifest.digest, 'every child is labelled, as containerd does');
      assert.equal(indexInfo.labels['containerd.io/gc.ref.content.m.1'], mArm.manifest.digest);
      await assert.rejects(content.info(mAmd.config.digest), (err: Error & { kind?: string }) => err.kind === 'not-found');
      await assert.rejects(pull(client, ref, { plainHttp: true, platform: 'linux/s390x' }), /no manifest for platform linux\/s390x/);
      const all = await pull(client, ref, { plainHttp: true, allPlatforms: true });
      assert.equal(all.manifests.length, 2);
      await content.info(mAmd.config.digest);
    });

    it('pulls and pushes a Docker schema 2 manifest list', async () => {
      const { ns, client, content } = fresh();
      const ref = `${f.reg.host}/test/docker:v1`;
      const res = await pull(client, ref, { plainHttp: true });
      assert.equal(res.image.target.mediaType, MediaType.dockerManifestList);
      assert.deepEqual(res.image.target, f.docker.target);
      const amdManifest = f.docker.manifests[0]?.manifest;
      assert.equal(amdManifest?.mediaType, MediaType.dockerManifest);
      assert.deepEqual(res.manifests, [amdManifest]);
      assert.equal((await content.info(f.docker.target.digest)).labels['containerd.io/gc.ref.content.m.0'], amdManifest?.digest);
      assert.match(await ctr(ns, 'images', 'ls'), /manifest\.list\.v2\+json/);
      await push(client, ref, `${f.reg.host}/pushed/docker:v1`, { plainHttp: true, platform: 'linux/amd64' });
      assert.equal(await skopeoDigest(`${f.reg.host}/pushed/docker:v1`), amdManifest?.digest, 'with --platform the tag names the one manifest');
    });

    it('pushes an image back to another repository: same manifest digest in skopeo', async () => {
      const { client } = fresh();
      await pull(client, `${f.reg.host}/test/single:v1`, { plainHttp: true });
      const events: TransferProgress[] = [];
      const res = await push(client, `${f.reg.host}/test/single:v1`, `${f.reg.host}/pushed/single:v2`, {
        plainHttp: true,
        chunkSize: 1024 * 1024,
        onProgress: (p) => events.push(p),
      });
      assert.equal(res.target.digest, f.single.target.digest);
      assert.equal(await skopeoDigest(`${f.reg.host}/pushed/single:v2`), f.single.target.digest);
      assert.ok(events.some((p) => p.status === 'uploading' && p.kind === 'layer'));

      // An index, pulled whole, pushed whole.
      await pull(client, `${f.reg.host}/test/multi:v1`, { plainHttp: true, allPlatforms: true });
      await push(client, `${f.reg.host}/test/multi:v1`, `${f.reg.host}/pushed/multi:v1`, { plainHttp: true });
      assert.equal(await skopeoDigest(`${f.reg.host}/pushed/multi:v1`), f.multi.target.digest);
      await assert.rejects(push(client, 'no/such:image', `${f.reg.host}/x/y:z`, { plainHttp: true }), (err: Error & { kind?: string }) => err.kind === 'not-found');
    });

    it('pulls with basic auth', { skip: haveHtpasswd() ? false : 'needs htpasswd (apache2-utils)' }, async () => {
      const { client } = fresh();
      const basic = f.basic as TestRegistry;
      const ref = `${basic.host}/private/single:v1`;
      await assert.rejects(pull(client, ref, { plainHttp: true }), (err: RegistryError) => err.status === 401);
      const res = await pull(client, ref, { plainHttp: true, auth: { username: 'alice', password: 's3cret' } });
      assert.deepEqual(res.image.target, f.single.target);
      await push(client, ref, `${basic.host}/private/copy:v1`, { plainHttp: true, auth: { username: 'alice', password: 's3cret' } });
      assert.equal(await skopeoDigest(`${basic.host}/private/copy:v1`, { creds: 'alice:s3cret' }), f.single.target.digest);
    });

    it('pulls and pushes with bearer tokens, one token request per scope', async () => {
      const { client } = fresh();
      const ref = `${f.bearer.host}/tok/single:v1`;
      f.tokens.requests.length = 0;
      const auth = { username: 'bob', password: 'hunter2' };
      const res = await pull(client, ref, { plainHttp: true, auth });
      assert.deepEqual(res.image.target, f.single.target);
      assert.deepEqual(f.tokens.requests, [{ scopes: ['repository:tok/single:pull'], service: f.tokens.service, user: 'bob' }]);
      await push(client, ref, `${f.bearer.host}/tok/pushed:v1`, { plainHttp: true, auth });
      // One more for the new repository: its challenges ask for `pull`, which `pull,push` covers.
      assert.deepEqual(f.tokens.requests.slice(1).map((r) => r.scopes), [['repository:tok/pushed:pull,push']]);
      assert.equal(await skopeoDigest(`${f.bearer.host}/tok/pushed:v1`, { creds: 'bob:hunter2' }), f.single.target.digest);
      await assert.rejects(pull(client, ref, { plainHttp: true }), (err: RegistryError) => err.status === 401);
    });

    it('resumes a blob whose download was cut, from the bytes already ingested (Range)', async () => {
      const { client, content } = fresh();
      const layer = f.cut.manifests[0]?.layers.at(-1);
      assert.ok(layer);
      const cutAt = 300_000;
      const proxy = await startProxy(f.reg.host, { cutBlobAfter: cutAt, only: new Set([layer.digest]) });
      try {
        const events: TransferProgress[] = [];
        await pull(client, `${proxy.host}/test/cut:v1`, { plainHttp: true, onProgress: (p) => events.push(p) });
        const gets = proxy.requests.filter((r) => r.method === 'GET' && r.url.endsWith(layer.digest));
        assert.equal(gets.length, 2, 'one cut transfer, one resumed');
        assert.equal(gets[0]?.headers.range, undefined);
        const range = /^bytes=(\d+)-$/.exec(gets[1]?.headers.range ?? '');
        assert.ok(range, `second GET asks for a range: ${gets[1]?.headers.range}`);
        const from = Number(range[1]);
        assert.ok(from > 0 && from <= cutAt, `resumes at ${from}, after the first try's bytes`);
        assert.equal(gets[1]?.status, 206);
        const info = await content.info(layer.digest);
        assert.equal(info.size, layer.size);
        const done = events.find((p) => p.digest === layer.digest && p.status === 'done');
        assert.equal(done?.resumedFrom, 0, 'the rate counts from the first try');
      } finally {
        await proxy.close();
      }
    });

    it('refuses a blob whose bytes do not match its digest, and leaves nothing behind', async () => {
      const { ns, client, content, images, leases } = fresh();
      const proxy = await startProxy(f.reg.host, { corruptBlobs: true });
      const ref = `${proxy.host}/test/corrupt:v1`;
      try {
        await assert.rejects(pull(client, ref, { plainHttp: true }), (err: Error) => {
          assert.ok(err instanceof DigestMismatchError, `${err}`);
          return /digest mismatch/.test(err.message);
        });
      } finally {
        await proxy.close();
      }
      await assert.rejects(images.get(ref), (err: Error & { kind?: string }) => err.kind === 'not-found');
      assert.deepEqual(await leases.list(), []);
      assert.deepEqual(await content.listStatuses(), [], 'no ingest left');
      assert.deepEqual(await content.list(), [], 'the manifest fetched under the lease went with it');
      assert.equal((await ctr(ns, 'content', 'ls', '-q')).trim(), '');
    });

    // Both engines abort an ingest once the lease holding it is gone.
    it('leaves nothing of a pull that failed mid-download once its lease is gone', async () => {
      const { client, content, leases } = fresh();
      const layer = f.dropped.manifests[0]?.layers.at(-1);
      assert.ok(layer);
      const proxy = await startProxy(f.reg.host, { cutBlobAfter: 200_000, only: new Set([layer.digest]) });
      try {
        await assert.rejects(pull(client, `${proxy.host}/test/dropped:v1`, { plainHttp: true, retries: 0 }), (err: RegistryError) => err.retryable);
      } finally {
        await proxy.close();
      }
      assert.deepEqual(await leases.list(), []);
      assert.deepEqual(await content.listStatuses(), [], 'the partial ingest went with the lease');
      assert.deepEqual(await content.list(), [], 'so did the manifest and the blobs that were complete');
    });

    it('keeps a given lease, so a pull cut short can resume on the next call', async () => {
      const { client, content, leases } = fresh();
      const layer = f.leased.manifests[0]?.layers.at(-1);
      assert.ok(layer);
      const lease = await leases.create({ expireAfterMs: 60_000 });
      const proxy = await startProxy(f.reg.host, { cutBlobAfter: 200_000, only: new Set([layer.digest]) });
      try {
        await assert.rejects(pull(client, `${proxy.host}/test/leased:v1`, { plainHttp: true, lease: lease.id, retries: 0 }), (err: RegistryError) => err.retryable);
        const partial = (await content.listStatuses()).find((s) => s.ref === `layer-${layer.digest}`);
        assert.ok(partial && partial.offset > 0, 'the cut ingest is still there, held by the lease');
        await pull(client, `${proxy.host}/test/leased:v1`, { plainHttp: true, lease: lease.id });
        const gets = proxy.requests.filter((r) => r.method === 'GET' && r.url.endsWith(layer.digest));
        assert.equal(gets.at(-1)?.headers.range, `bytes=${partial.offset}-`);
        assert.deepEqual((await leases.list()).map((l) => l.id), [lease.id]);
      } finally {
        await proxy.close();
        await leases.delete(lease.id, { sync: true });
      }
    });
  });
}
