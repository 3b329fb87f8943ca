import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { LocalContentStore } from '@berth/content-local';
import {
  type ContentInfo,
  type ContentStore,
  GcLabel,
  type GcStats,
  isNotFound,
  NotFoundError,
  type RequestContext,
} from '@berth/plugin-api';
import { EventExchangeImpl } from '../event-exchange.js';
import { silentLogger } from '../logger.js';
import { LevelMetadataStore } from '../metadata/level-metadata-store.js';
import { ContentServiceImpl } from '../services/content-service.js';
import { ImagesServiceImpl } from '../services/images-service.js';
import { LeasesServiceImpl } from '../services/leases-service.js';
import { MetadataGarbageCollector } from './garbage-collector.js';

/** The real store, with a hook at the end of walk() so a test can hold a collection mid-run. */
class GatedStore implements ContentStore {
  walks = 0;
  /** When set, walk() waits for it after walking. */
  gate: Promise<void> | undefined;
  onWalked: () => void = () => {};

  constructor(readonly real: LocalContentStore) {}

  info(digest: string) {
    return this.real.info(digest);
  }
  read(digest: string, offset?: number, size?: number) {
    return this.real.read(digest, offset, size);
  }
  async walk(fn: (info: ContentInfo) => Promise<void> | void) {
    this.walks++;
    await this.real.walk(fn);
    this.onWalked();
    if (this.gate) await this.gate;
  }
  delete(digest: string) {
    return this.real.delete(digest);
  }
  writer(opts: Parameters<ContentStore['writer']>[0]) {
    return this.real.writer(opts);
  }
  status(ref: string) {
    return this.real.status(ref);
  }
  listStatuses() {
    return this.real.listStatuses();
  }
  abort(ref: string) {
    return this.real.abort(ref);
  }
}

let root: string;
let n = 0;
let meta: LevelMetadataStore;
let store: GatedStore;
let gc: MetadataGarbageCollector;
let content: ContentServiceImpl;
let images: ImagesServiceImpl;
let leases: LeasesServiceImpl;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-gc-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  const dir = join(root, `t${++n}`);
  meta = await LevelMetadataStore.open(join(dir, 'meta'));
  store = new GatedStore(await LocalContentStore.open(join(dir, 'content')));
  // A pause threshold of 0.5: a scheduled collection waits as long as the last ones took.
  gc = new MetadataGarbageCollector(meta, store, silentLogger, { scheduleDelayMs: 20, pauseThreshold: 0.5 });
  // The services get no collector: collections run only when a test asks.
  const exchange = new EventExchangeImpl();
  content = new ContentServiceImpl(store, meta, exchange);
  images = new ImagesServiceImpl(meta, exchange);
  leases = new LeasesServiceImpl(meta);
});

afterEach(async () => {
  await gc.stop();
  await meta.close();
});

const A: RequestContext = { namespace: 'ns-a' };
const B: RequestContext = { namespace: 'ns-b' };
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

async function put(ctx: RequestContext, text: string, labels: Record<string, string> = {}): Promise<string> {
  const w = await content.writer(ctx, { ref: `ref-${text}` });
  await w.write(Buffer.from(text));
  return w.commit(text.length, sha256(text), labels);
}

async function image(ctx: RequestContext, name: string, target: string, size = 1) {
  await images.create(ctx, { name, target: { mediaType: MANIFEST, digest: target, size } });
}

async function inStore(digest: string): Promise<boolean> {
  try {
    await store.info(digest);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

async function inMeta(ctx: RequestContext, digest: string): Promise<boolean> {
  try {
    await content.info(ctx, digest);
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** Where a blob is: in the store, and in which of A and B. */
async function where(digest: string): Promise<string> {
  const parts = [(await inStore(digest)) ? 'store' : '', (await inMeta(A, digest)) ? 'a' : '', (await inMeta(B, digest)) ? 'b' : ''];
  return parts.filter(Boolean).join('+') || 'gone';
}

const counts = ({ durationMs, ...rest }: GcStats) => {
  assert.ok(durationMs >= 0);
  return rest;
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('an image keeps its target and everything its gc.ref.content labels reach', async () => {
  const layer0 = await put(A, 'layer 0');
  const layer1 = await put(A, 'layer 1');
  const config = await put(A, 'config');
  const missing = sha256('never written');
  const child = await put(A, 'child manifest', { [`${GcLabel.refContentPrefix}.l.0`]: layer1 });
  const manifest = await put(A, 'index', {
    [`${GcLabel.refContentPrefix}.config`]: config,
    [`${GcLabel.refContentPrefix}.l.0`]: layer0,
    [`${GcLabel.refContentPrefix}.m.0`]: child,
    [`${GcLabel.refContentPrefix}.m.1`]: missing,
    [`${GcLabel.refContentPrefix}.junk`]: 'not a digest',
    'unrelated.label': layer1,
  });
  const stray = await put(A, 'stray');
  // Referenced only by a label on the stray blob, which nothing holds.
  const strayChild = await put(A, 'stray child');
  await content.update(A, { digest: stray, labels: { [`${GcLabel.refContentPrefix}.x`]: strayChild } }, []);
  await image(A, 'app:1', manifest);

  const stats = counts(await gc.collect());
  assert.deepEqual(stats, { contentDeleted: 2, blobsDeleted: 2, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  for (const digest of [manifest, config, layer0, child, layer1]) assert.equal(await where(digest), 'store+a', digest);
  assert.equal(await where(stray), 'gone');
  assert.equal(await where(strayChild), 'gone');

  // Without the image, all of it goes.
  await images.delete(A, 'app:1');
  assert.deepEqual(counts(await gc.collect()), { contentDeleted: 5, blobsDeleted: 5, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  for (const digest of [manifest, config, layer0, child, layer1]) assert.equal(await where(digest), 'gone');
  // Nothing left: a further run does nothing.
  assert.deepEqual(counts(await gc.collect()), { contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
});

test('labels are followed within a namespace only', async () => {
  const layer = await put(B, 'layer');
  const manifest = await put(A, 'manifest', { [`${GcLabel.refContentPrefix}.l.0`]: layer });
  await image(A, 'img', manifest);
  await gc.collect();
  assert.equal(await where(manifest), 'store+a');
  assert.equal(await where(layer), 'gone');
});

test('a blob in two namespaces lives until both drop it', async () => {
  const blob = await put(A, 'shared');
  // B's writer opens complete (no bytes move) and its commit records the blob in B.
  const shared = await content.writer(B, { ref: 'x', expected: blob });
  assert.equal(shared.offset, 6);
  assert.equal(await shared.commit(6, blob), blob);
  await image(A, 'img', blob);
  await image(B, 'img', blob);
  await gc.collect();
  assert.equal(await where(blob), 'store+a+b');

  await images.delete(A, 'img');
  assert.deepEqual(counts(await gc.collect()), { contentDeleted: 1, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(blob), 'store+b');

  await images.delete(B, 'img');
  assert.deepEqual(counts(await gc.collect()), { contentDeleted: 1, blobsDeleted: 1, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(blob), 'gone');
});

test('a blob labelled containerd.io/gc.root is a root', async () => {
  const rooted = await put(A, 'rooted', { [GcLabel.root]: '2024-01-01T00:00:00Z' });
  const ref = await put(A, 'held by root');
  await content.update(A, { digest: rooted, labels: { [`${GcLabel.refContentPrefix}`]: ref } }, [`labels.${GcLabel.refContentPrefix}`]);
  await gc.collect();
  assert.equal(await where(rooted), 'store+a');
  assert.equal(await where(ref), 'store+a');

  await content.update(A, { digest: rooted, labels: {} }, [`labels.${GcLabel.root}`]);
  await gc.collect();
  assert.equal(await where(rooted), 'gone');
  assert.equal(await where(ref), 'gone');
});

test('a lease keeps its content until the lease is deleted', async () => {
  await leases.create(A, { id: 'pull' });
  const leased: RequestContext = { ...A, lease: 'pull' };
  const held = await put(leased, 'held');
  const added = await put(A, 'added later');
  await leases.addResource(A, 'pull', { type: 'content', id: added });
  const loose = await put(A, 'loose');
  await gc.collect();
  assert.equal(await where(held), 'store+a');
  assert.equal(await where(added), 'store+a');
  assert.equal(await where(loose), 'gone');

  await leases.deleteResource(A, 'pull', { type: 'content', id: added });
  await gc.collect();
  assert.equal(await where(added), 'gone');
  assert.equal(await where(held), 'store+a');

  await leases.delete(A, 'pull');
  assert.deepEqual(counts(await gc.collect()), { contentDeleted: 1, blobsDeleted: 1, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(held), 'gone');
});

test('an expired lease is deleted by a collection and releases its content', async () => {
  await leases.create(A, { id: 'old', labels: { [GcLabel.expire]: new Date(Date.now() - 60_000).toISOString() } });
  await leases.create(A, { id: 'young', labels: { [GcLabel.expire]: new Date(Date.now() + 3_600_000).toISOString() } });
  const old = await put({ ...A, lease: 'old' }, 'old');
  const young = await put({ ...A, lease: 'young' }, 'young');
  const stats = counts(await gc.collect());
  assert.deepEqual(stats, { contentDeleted: 1, blobsDeleted: 1, leasesExpired: 1, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(old), 'gone');
  assert.equal(await where(young), 'store+a');
  assert.deepEqual((await leases.list(A, [])).map((l) => l.id), ['young']);
  await assert.rejects(leases.listResources(A, 'old'), NotFoundError);
  const left = await meta.view(async (tx) => {
    const keys: string[] = [];
    for await (const [key] of tx.range(['v1', 'ns-a', 'leases', 'old'])) keys.push(key.join('/'));
    return keys;
  });
  assert.deepEqual(left, []);
});

test('open or unexpired ingests are kept; a leased ingest goes with its lease, as in containerd', async () => {
  const open = await content.writer(A, { ref: 'open' });
  await open.write(Buffer.from('still writing'));
  const closed = await content.writer(B, { ref: 'closed' });
  await closed.write(Buffer.from('paused'));
  await closed.close();
  await gc.collect();
  assert.equal((await content.status(A, 'open')).offset, 13);
  assert.equal((await content.status(B, 'closed')).offset, 6);

  const digest = await open.commit(13, sha256('still writing'));
  await image(A, 'img', digest);
  const resumed = await content.writer(B, { ref: 'closed' });
  assert.equal(resumed.offset, 6);
  await gc.collect();
  assert.equal(await resumed.commit(6, sha256('paused')), sha256('paused'));
  assert.equal(await where(digest), 'store+a');

  // An ingest held by a lease is aborted once the lease is gone (a failed pull leaves nothing behind).
  const leased = { ...A, lease: 'pull' };
  await leases.create(A, { id: 'pull' });
  const partial = await content.writer(leased, { ref: 'partial' });
  await partial.write(Buffer.from('half a layer'));
  await partial.close();
  await gc.collect();
  assert.equal((await content.status(A, 'partial')).offset, 12);
  await leases.delete(A, 'pull');
  const stats = await gc.collect();
  assert.equal(stats.ingestsAborted, 1);
  await assert.rejects(content.status(A, 'partial'), { name: 'NotFoundError' });
});

test('collect() called during a run starts a new run after it, shared by every caller meanwhile', async () => {
  const kept = await put(A, 'kept');
  await image(A, 'img', kept);
  let release = () => {};
  store.gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const walked = new Promise<void>((resolve) => {
    store.onWalked = resolve;
  });
  const first = gc.collect();
  await walked;
  store.gate = undefined;
  store.onWalked = () => {};

  // The first run has walked the store; a blob written now (no metadata lock needed) is one it cannot see.
  const w = await store.real.writer({ ref: 'orphan' });
  await w.write(Buffer.from('orphan'));
  const orphan = await w.commit(6);
  const second = gc.collect();
  const third = gc.collect();
  assert.equal(second, third);
  assert.notEqual(first, second);
  release();

  assert.deepEqual(counts(await first), { contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.ok(await inStore(orphan));
  assert.deepEqual(counts(await second), { contentDeleted: 0, blobsDeleted: 1, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(orphan), 'gone');
  assert.equal(store.walks, 2);
  assert.equal(await where(kept), 'store+a');
});

test('a delete committed before collect() is swept by that collection', async () => {
  const blobs = await Promise.all(['d0', 'd1', 'd2', 'd3', 'd4'].map((t) => put(A, t)));
  for (const [i, digest] of blobs.entries()) await image(A, `img${i}`, digest);
  // Collections and deletions interleaved: each collect() follows one delete.
  const runs: Array<Promise<GcStats>> = [];
  for (const [i, digest] of blobs.entries()) {
    await images.delete(A, `img${i}`);
    // Checked once this collection is done: the blob must be gone.
    runs.push(
      gc.collect().then(async (stats) => {
        assert.equal(await inStore(digest), false, `blob ${i} survived the collection after its delete`);
        return stats;
      }),
    );
  }
  await Promise.all(runs);
});

test('schedule() coalesces a burst into one collection', async () => {
  for (let i = 0; i < 20; i++) gc.schedule();
  assert.equal(store.walks, 0);
  await sleep(120);
  assert.equal(store.walks, 1);

  // A later burst is another collection, and it sweeps.
  const blob = await put(A, 'scheduled away');
  for (let i = 0; i < 5; i++) gc.schedule();
  await sleep(120);
  assert.equal(store.walks, 2);
  assert.equal(await where(blob), 'gone');

  // stop() cancels a pending one.
  gc.schedule();
  await gc.stop();
  await sleep(60);
  assert.equal(store.walks, 2);
});

test('a scheduled collection walks the content store only when a deletion left it dirty', async () => {
  await gc.collect(); // the first walks everything
  assert.equal(store.walks, 1);
  // A blob no namespace records, which only a walk of the store finds.
  const w = await store.real.writer({ ref: 'unrecorded' });
  await w.write(Buffer.from('unrecorded'));
  const orphan = await w.commit(10);

  // A deletion that removed no record of a blob (a lease with nothing in it): the store is not walked.
  await leases.create(A, { id: 'empty' });
  await leases.delete(A, 'empty');
  gc.schedule();
  await sleep(120);
  assert.equal(store.walks, 1);
  assert.ok(await inStore(orphan));

  // A record deleted by the sweep makes the store dirty: that collection walks it.
  const dropped = await put(A, 'unreferenced');
  gc.schedule();
  await sleep(120);
  assert.equal(store.walks, 2);
  assert.equal(await where(dropped), 'gone');
  assert.equal(await where(orphan), 'gone');

  // So does a deletion that says so: Content.Delete leaves its blob to the collector.
  const kept = await put(A, 'deleted by hand', { [GcLabel.root]: 'x' });
  const withGc = new ContentServiceImpl(store, meta, new EventExchangeImpl(), gc);
  await withGc.delete(A, kept);
  assert.equal(await where(kept), 'store');
  await sleep(120);
  assert.equal(store.walks, 3);
  assert.equal(await where(kept), 'gone');
});

test('concurrent leased commits survive repeated collections', async () => {
  const COUNT = 50;
  let done = false;
  let collections = 0;
  const collector = (async () => {
    while (!done) {
      await gc.collect();
      collections++;
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();

  const committed = await Promise.all(
    Array.from({ length: COUNT }, async (_, i) => {
      const lease = `lease-${i}`;
      await leases.create(A, { id: lease });
      const ctx: RequestContext = { ...A, lease };
      const text = `blob number ${i} `.repeat(i + 1);
      const w = await content.writer(ctx, { ref: `race-${i}`, expected: sha256(text) });
      const bytes = Buffer.from(text);
      await w.write(bytes.subarray(0, bytes.length >> 1));
      await new Promise((resolve) => setImmediate(resolve));
      await w.write(bytes.subarray(bytes.length >> 1));
      const digest = await w.commit(bytes.length, sha256(text));
      // Every third lease is let go at once; the others hold their blob.
      if (i % 3 === 0) await leases.delete(A, lease);
      return { i, digest, lease };
    }),
  );
  done = true;
  await collector;
  assert.ok(collections > 1, `only ${collections} collections ran`);

  const live = new Set((await leases.list(A, [])).map((l) => l.id));
  for (const { i, digest, lease } of committed) {
    if (i % 3 === 0) continue;
    assert.ok(live.has(lease), lease);
    assert.ok(await inStore(digest), `blob ${i} missing from the store`);
    assert.ok(await inMeta(A, digest), `blob ${i} missing from metadata`);
  }
  await gc.collect();
  for (const { i, digest } of committed) assert.equal(await where(digest), i % 3 === 0 ? 'gone' : 'store+a', `blob ${i}`);
  assert.deepEqual(await content.listStatuses(A, []), []);
});

test('a collector without a content store sweeps metadata only', async () => {
  const blob = await put(A, 'metadata only');
  const metaOnly = new MetadataGarbageCollector(meta, undefined, silentLogger, { scheduleDelayMs: 20 });
  assert.deepEqual(counts(await metaOnly.collect()), { contentDeleted: 1, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0 });
  assert.equal(await where(blob), 'store');
});
