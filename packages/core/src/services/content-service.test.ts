import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { LocalContentStore } from '@berth/content-local';
import {
  AlreadyExistsError,
  type Envelope,
  FailedPreconditionError,
  type GarbageCollector,
  type GcStats,
  InvalidArgumentError,
  NotFoundError,
  type RequestContext,
} from '@berth/plugin-api';
import { EventExchangeImpl } from '../event-exchange.js';
import { LevelMetadataStore } from '../metadata/level-metadata-store.js';
import { ContentServiceImpl } from './content-service.js';
import { LeasesServiceImpl } from './leases-service.js';

let root: string;
let n = 0;
let meta: LevelMetadataStore;
let store: LocalContentStore;
let exchange: EventExchangeImpl;
let service: ContentServiceImpl;
let scheduled: number;
let events: Envelope[];
let stopEvents: () => Promise<void>;

/** Counts schedule() calls; no collection runs in these tests. */
const gc: GarbageCollector = {
  schedule: () => {
    scheduled++;
  },
  collect: async (): Promise<GcStats> => ({ contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0, durationMs: 0 }),
};

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-content-service-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  const dir = join(root, `t${++n}`);
  meta = await LevelMetadataStore.open(join(dir, 'meta'));
  store = await LocalContentStore.open(join(dir, 'content'));
  exchange = new EventExchangeImpl();
  scheduled = 0;
  service = new ContentServiceImpl(store, meta, exchange, gc);
  events = [];
  const abort = new AbortController();
  const consumer = (async () => {
    for await (const env of exchange.subscribe([], abort.signal)) events.push(env);
  })();
  stopEvents = async () => {
    abort.abort();
    await consumer;
  };
});

afterEach(async () => {
  await stopEvents();
  await meta.close();
});

const A: RequestContext = { namespace: 'ns-a' };
const B: RequestContext = { namespace: 'ns-b' };
const none: RequestContext = {};

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** Write and commit `text` as one blob; returns its digest. */
async function put(
  ctx: RequestContext,
  text: string,
  opts: { ref?: string; labels?: Record<string, string>; expected?: boolean } = {},
): Promise<string> {
  const bytes = Buffer.from(text);
  const digest = sha256(bytes);
  const w = await service.writer(ctx, { ref: opts.ref ?? `ref-${text}`, ...(opts.expected === false ? {} : { expected: digest }) });
  await w.write(bytes);
  return w.commit(bytes.length, digest, opts.labels);
}

async function readAll(ctx: RequestContext, digest: string, offset?: number, size?: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of await service.read(ctx, digest, offset, size)) chunks.push(chunk);
  return Buffer.concat(chunks).toString();
}

const blobFile = (digest: string) => join(store.root, 'blobs', 'sha256', digest.slice('sha256:'.length));

async function published(): Promise<Array<{ namespace: string; topic: string; type: string; data: unknown }>> {
  await new Promise((resolve) => setImmediate(resolve));
  return events.splice(0).map((e) => ({ namespace: e.namespace, topic: e.topic, type: e.event.typeUrl, data: e.event.data }));
}

const notFound = (p: Promise<unknown>) => assert.rejects(p, NotFoundError);

test('a blob committed in one namespace is visible there and nowhere else', async () => {
  const digest = await put(A, 'hello');
  assert.equal(digest, sha256(Buffer.from('hello')));
  const info = await service.info(A, digest);
  assert.equal(info.digest, digest);
  assert.equal(info.size, 5);
  assert.deepEqual(info.labels, {});
  assert.ok(info.createdAt instanceof Date && info.updatedAt instanceof Date);
  assert.deepEqual((await service.list(A, [])).map((i) => i.digest), [digest]);
  assert.equal(await readAll(A, digest), 'hello');
  assert.equal(await readAll(A, digest, 1, 3), 'ell');

  await notFound(service.info(B, digest));
  await notFound(service.read(B, digest));
  await notFound(service.delete(B, digest));
  await notFound(service.update(B, { digest, labels: {} }, []));
  assert.deepEqual(await service.list(B, []), []);
  // No ingest is left behind.
  assert.deepEqual(await service.listStatuses(A, []), []);
  assert.deepEqual(await store.listStatuses(), []);
});

test('a writer for a digest this namespace has is AlreadyExists', async () => {
  const digest = await put(A, 'twice');
  await assert.rejects(service.writer(A, { ref: 'again', expected: digest }), AlreadyExistsError);
  assert.deepEqual(await store.listStatuses(), []);
  // Committing the same bytes without announcing them is AlreadyExists too, and removes the ingest.
  await assert.rejects(put(A, 'twice', { ref: 'again', expected: false }), AlreadyExistsError);
  assert.deepEqual(await service.listStatuses(A, []), []);
  assert.deepEqual(await store.listStatuses(), []);
});

test('a writer for a digest only another namespace has shares the blob without copying it', async () => {
  const digest = await put(B, 'shared bytes', { labels: { in: 'b' } });
  const before = await stat(blobFile(digest));
  // As containerd: the ingest opens complete, and only the commit makes the blob visible in A.
  const shared = await service.writer(A, { ref: 'r', expected: digest });
  assert.equal(shared.offset, 12);
  assert.equal(shared.digest(), digest);
  await assert.rejects(service.info(A, digest), NotFoundError);
  await assert.rejects(shared.write(Buffer.from('more')), FailedPreconditionError);
  assert.equal(await shared.commit(12, digest, { empty: '' }), digest);
  const info = await service.info(A, digest);
  assert.equal(info.size, 12);
  // Labels are per namespace.
  assert.deepEqual(info.labels, {});
  assert.deepEqual((await service.info(B, digest)).labels, { in: 'b' });
  assert.equal(await readAll(A, digest), 'shared bytes');
  const after = await stat(blobFile(digest));
  assert.equal(after.ino, before.ino);
  assert.deepEqual(await readdir(join(store.root, 'blobs', 'sha256')), [digest.slice(7)]);
  assert.deepEqual(await store.listStatuses(), []);
  // Now A has it, so a second writer is plain AlreadyExists.
  await assert.rejects(service.writer(A, { ref: 'r', expected: digest }), AlreadyExistsError);
});

test('committing bytes another namespace has records them here without a second copy', async () => {
  const digest = await put(B, 'same');
  const before = await stat(blobFile(digest));
  assert.equal(await put(A, 'same', { expected: false, labels: { mine: 'yes' } }), digest);
  assert.deepEqual((await service.info(A, digest)).labels, { mine: 'yes' });
  assert.equal((await stat(blobFile(digest))).ino, before.ino);
  assert.deepEqual(await store.listStatuses(), []);
});

test('labels given at commit are stored; update applies label paths', async () => {
  const digest = await put(A, 'labelled', { labels: { a: '1', b: '2', 'x.y': '3' } });
  assert.deepEqual((await service.info(A, digest)).labels, { a: '1', b: '2', 'x.y': '3' });

  const updated = await service.update(A, { digest, labels: { a: 'one', b: '', c: 'new', ignored: 'z' } }, [
    'labels.a',
    'labels.b',
    'labels.c',
  ]);
  assert.deepEqual(updated.labels, { a: 'one', c: 'new', 'x.y': '3' });
  assert.deepEqual((await service.info(A, digest)).labels, updated.labels);
  // The key is everything after "labels.".
  await service.update(A, { digest, labels: { 'x.y': 'dotted' } }, ['labels.x.y']);
  assert.equal((await service.info(A, digest)).labels['x.y'], 'dotted');
  // No paths: labels are replaced, empty values dropped.
  assert.deepEqual((await service.update(A, { digest, labels: { only: 'this', gone: '' } }, [])).labels, { only: 'this' });

  await assert.rejects(service.update(A, { digest, labels: {} }, ['size']), InvalidArgumentError);
  await assert.rejects(service.update(A, { digest, labels: { big: 'v'.repeat(5000) } }, ['labels.big']), InvalidArgumentError);
  await assert.rejects(service.update(A, { digest: 'sha256:nothex', labels: {} }, []), InvalidArgumentError);
  await notFound(service.update(A, { digest: sha256(Buffer.from('absent')), labels: {} }, []));
  assert.deepEqual((await service.info(A, digest)).labels, { only: 'this' });
  // Invalid labels at commit are refused and the ingest stays.
  const w = await service.writer(A, { ref: 'bad-labels' });
  await w.write(Buffer.from('x'));
  await assert.rejects(w.commit(1, '', { '': 'v' }), InvalidArgumentError);
  await w.close();
  assert.equal((await service.status(A, 'bad-labels')).offset, 1);
});

test('list filters on digest and labels', async () => {
  const one = await put(A, 'one', { labels: { x: '1', kind: 'layer' } });
  const two = await put(A, 'two', { labels: { x: '2' } });
  const three = await put(A, 'three');
  const digests = async (filters: string[]) => (await service.list(A, filters)).map((i) => i.digest).sort();

  assert.deepEqual(await digests([]), [one, two, three].sort());
  assert.deepEqual(await digests([`digest==${two}`]), [two]);
  assert.deepEqual(await digests(['labels.x==1']), [one]);
  assert.deepEqual(await digests(['labels.x']), [one, two].sort());
  assert.deepEqual(await digests(['labels.x!=1']), [two, three].sort());
  assert.deepEqual(await digests(['labels.x==1', 'labels.x==2']), [one, two].sort());
  assert.deepEqual(await digests(['labels.x==1,labels.kind==layer']), [one]);
  assert.deepEqual(await digests(['labels.x==1,labels.kind==other']), []);
  assert.deepEqual(await digests(['size==5']), [three]);
  await assert.rejects(service.list(A, ['labels.x==']), InvalidArgumentError);
});

test('delete removes the record, publishes /content/delete in the caller namespace and schedules GC', async () => {
  const digest = await put(A, 'doomed');
  await put(B, 'doomed', { expected: false });
  await published();
  await service.delete(A, digest);
  await notFound(service.info(A, digest));
  await notFound(service.read(A, digest));
  assert.deepEqual(await service.list(A, []), []);
  // B's record and the blob itself are untouched (the store is GC's business).
  assert.equal((await service.info(B, digest)).size, 6);
  await store.info(digest);
  assert.deepEqual(await published(), [
    { namespace: 'ns-a', topic: '/content/delete', type: 'containerd.events.ContentDelete', data: { digest } },
  ]);
  assert.equal(scheduled, 1);

  await notFound(service.delete(A, digest));
  await assert.rejects(service.delete(A, 'md5:abc'), InvalidArgumentError);
  assert.deepEqual(await published(), []);
  assert.equal(scheduled, 1);
});

test('ingests are named per namespace: the same ref in two namespaces is two ingests', async () => {
  const wa = await service.writer(A, { ref: 'layer-1', total: 10 });
  // Both can be open at once: their refs differ underneath.
  const wb = await service.writer(B, { ref: 'layer-1' });
  await wa.write(Buffer.from('abc'));
  await wb.write(Buffer.from('defgh'));
  assert.equal(wa.offset, 3);
  const open = await wa.status();
  assert.equal(open.ref, 'layer-1');
  assert.equal(open.offset, 3);
  assert.equal(open.total, 10);
  await wa.close();
  await wb.close();

  const sa = await service.status(A, 'layer-1');
  assert.equal(sa.ref, 'layer-1');
  assert.equal(sa.offset, 3);
  assert.equal(sa.total, 10);
  assert.equal((await service.status(B, 'layer-1')).offset, 5);
  await notFound(service.status(A, 'other'));

  const w2 = await service.writer(A, { ref: 'layer-2' });
  await w2.close();
  assert.deepEqual((await service.listStatuses(A, [])).map((s) => s.ref).sort(), ['layer-1', 'layer-2']);
  assert.deepEqual((await service.listStatuses(A, ['ref==layer-1'])).map((s) => [s.ref, s.offset]), [['layer-1', 3]]);
  assert.deepEqual(await service.listStatuses(A, ['ref==nothing']), []);
  assert.deepEqual((await service.listStatuses(B, [])).map((s) => [s.ref, s.offset]), [['layer-1', 5]]);

  await service.abort(A, 'layer-1');
  await notFound(service.status(A, 'layer-1'));
  await notFound(service.abort(A, 'layer-1'));
  assert.equal((await service.status(B, 'layer-1')).offset, 5);
  assert.deepEqual((await service.listStatuses(A, [])).map((s) => s.ref), ['layer-2']);

  // A writer on the aborted ref starts from nothing.
  const again = await service.writer(A, { ref: 'layer-1' });
  assert.equal(again.offset, 0);
  await again.close();
});

test('a commit with the wrong size or digest is FailedPrecondition and the ingest can be resumed', async () => {
  const bytes = Buffer.from('resumable');
  const digest = sha256(bytes);
  const w1 = await service.writer(A, { ref: 'resume' });
  await w1.write(bytes.subarray(0, 4));
  await w1.close();

  const w2 = await service.writer(A, { ref: 'resume' });
  assert.equal(w2.offset, 4);
  await w2.write(bytes.subarray(4));
  await assert.rejects(w2.commit(bytes.length + 1, digest), FailedPreconditionError);
  assert.equal((await service.status(A, 'resume')).offset, bytes.length);

  const w3 = await service.writer(A, { ref: 'resume' });
  assert.equal(w3.offset, bytes.length);
  assert.equal(w3.digest(), digest);
  await assert.rejects(w3.commit(bytes.length, sha256(Buffer.from('other'))), FailedPreconditionError);
  await notFound(service.info(A, digest));
  assert.equal((await service.status(A, 'resume')).offset, bytes.length);

  const w4 = await service.writer(A, { ref: 'resume' });
  assert.equal(await w4.commit(bytes.length, digest), digest);
  assert.equal((await service.info(A, digest)).size, bytes.length);
  assert.equal(await readAll(A, digest), 'resumable');
  await notFound(service.status(A, 'resume'));
  assert.deepEqual(await store.listStatuses(), []);
});

test('every call needs a namespace', async () => {
  const digest = sha256(Buffer.from('x'));
  const fails = (p: Promise<unknown>) =>
    assert.rejects(p, (err: unknown) => err instanceof FailedPreconditionError && /namespace is required/.test(err.message));
  await fails(service.info(none, digest));
  await fails(service.list(none, []));
  await fails(service.update(none, { digest, labels: {} }, []));
  await fails(service.delete(none, digest));
  await fails(service.read(none, digest));
  await fails(service.status(none, 'r'));
  await fails(service.listStatuses(none, []));
  await fails(service.abort(none, 'r'));
  await fails(service.writer(none, { ref: 'r' }));
  assert.deepEqual(await store.listStatuses(), []);
});

test('bad arguments are InvalidArgument', async () => {
  await assert.rejects(service.info(A, 'sha256:short'), InvalidArgumentError);
  await assert.rejects(service.writer(A, { ref: '' }), InvalidArgumentError);
  await assert.rejects(service.writer(A, { ref: 'r', expected: 'nope' }), InvalidArgumentError);
  const digest = await put(A, 'abc');
  // As containerd, a negative offset reads from the start.
  let read = '';
  for await (const chunk of await service.read(A, digest, -1)) read += Buffer.from(chunk).toString();
  assert.equal(read, 'abc');
});

test('writes under a lease join it: the ingest while writing, the content once committed', async () => {
  const leases = new LeasesServiceImpl(meta);
  await leases.create(A, { id: 'pull' });
  const ctx: RequestContext = { ...A, lease: 'pull' };
  const bytes = Buffer.from('leased');
  const w = await service.writer(ctx, { ref: 'leased-ref' });
  await w.write(bytes);
  assert.deepEqual(await leases.listResources(A, 'pull'), [{ type: 'ingests', id: 'leased-ref' }]);
  const digest = await w.commit(bytes.length, sha256(bytes));
  assert.deepEqual(await leases.listResources(A, 'pull'), [{ type: 'content', id: digest }]);

  // A blob shared in from another namespace joins the lease too.
  const other = await put(B, 'from b');
  const shared = await service.writer(ctx, { ref: 'x', expected: other });
  await shared.commit(0, other);
  assert.deepEqual(
    (await leases.listResources(A, 'pull')).map((r) => r.id).sort(),
    [digest, other].sort(),
  );
  // The lease is per namespace: B's writes with the same header do not find it.
  await notFound(service.writer({ ...B, lease: 'pull' }, { ref: 'y' }));
});

test('a writer under an unknown lease is NotFound and leaves nothing behind', async () => {
  const ctx: RequestContext = { ...A, lease: 'missing' };
  await assert.rejects(
    service.writer(ctx, { ref: 'r' }),
    (err: unknown) => err instanceof NotFoundError && /missing/.test(err.message),
  );
  assert.deepEqual(await service.listStatuses(A, []), []);
  assert.deepEqual(await store.listStatuses(), []);
  // Sharing a blob another namespace has is refused too, without recording it here.
  const digest = await put(B, 'theirs');
  await notFound(service.writer(ctx, { ref: 'r', expected: digest }));
  await notFound(service.info(A, digest));
});

test('abort under a lease removes the ingest from the lease', async () => {
  const leases = new LeasesServiceImpl(meta);
  await leases.create(A, { id: 'l' });
  const ctx: RequestContext = { ...A, lease: 'l' };
  const w = await service.writer(ctx, { ref: 'dropped' });
  await w.write(Buffer.from('abc'));
  await w.close();
  assert.deepEqual(await leases.listResources(A, 'l'), [{ type: 'ingests', id: 'dropped' }]);
  await service.abort(ctx, 'dropped');
  assert.deepEqual(await leases.listResources(A, 'l'), []);
  assert.deepEqual(await store.listStatuses(), []);
});

test('a commit whose lease is gone is NotFound and leaves the ingest to resume', async () => {
  const leases = new LeasesServiceImpl(meta);
  await leases.create(A, { id: 'short' });
  const bytes = Buffer.from('outlived its lease');
  const digest = sha256(bytes);
  const w = await service.writer({ ...A, lease: 'short' }, { ref: 'orphaned' });
  await w.write(bytes);
  await leases.delete(A, 'short');
  await notFound(w.commit(bytes.length, digest));
  await notFound(service.info(A, digest));
  await notFound(store.info(digest));
  assert.equal((await service.status(A, 'orphaned')).offset, bytes.length);

  const resumed = await service.writer(A, { ref: 'orphaned' });
  assert.equal(resumed.offset, bytes.length);
  assert.equal(await resumed.commit(bytes.length, digest), digest);
  assert.equal(await readAll(A, digest), 'outlived its lease');
});

test('ingestFile commits a file under a lease, shares what another namespace has, and refuses what is not a plain file', async () => {
  const leases = new LeasesServiceImpl(meta);
  await leases.create(A, { id: 'file-lease' });
  const file = join(root, `file-${n}`);
  const text = 'from a file descriptor '.repeat(1000);
  await writeFile(file, text);
  const fh = await open(file, 'r');
  try {
    const digest = sha256(Buffer.from(text));
    const info = await service.ingestFile({ ...A, lease: 'file-lease' }, fh.fd, { ref: 'by-fd', expected: digest, labels: { via: 'fd' } });
    assert.deepEqual([info.digest, info.size, info.labels], [digest, text.length, { via: 'fd' }]);
    assert.equal(await readAll(A, digest), text);
    assert.deepEqual(
      (await leases.listResources(A, 'file-lease')).map((r) => r.id),
      [digest],
      'the blob joins the lease',
    );
    // The same again: the blob as it is. In another namespace: shared, no second copy.
    assert.equal((await service.ingestFile(A, fh.fd, { ref: 'again', expected: digest })).digest, digest);
    assert.equal((await service.ingestFile(B, fh.fd, { ref: 'b', expected: digest })).digest, digest);
    // A prefix of the file, without an expected digest.
    const prefix = await service.ingestFile(A, fh.fd, { ref: 'prefix', size: 100 });
    assert.equal(prefix.digest, sha256(Buffer.from(text.slice(0, 100))));
    // Wrong digest: FailedPrecondition, no blob, the ingest stays to resume or abort.
    await assert.rejects(service.ingestFile(A, fh.fd, { ref: 'wrong', size: 50, expected: sha256(Buffer.from('x')) }), FailedPreconditionError);
    assert.equal((await service.status(A, 'wrong')).offset, 50);
    await assert.rejects(service.ingestFile(A, fh.fd, { ref: 'too-much', size: text.length + 1 }), InvalidArgumentError);
  } finally {
    await fh.close();
  }
  const dir = await open(root, 'r');
  try {
    await assert.rejects(service.ingestFile(A, dir.fd, { ref: 'dir' }), /not a regular file/);
  } finally {
    await dir.close();
  }
});
