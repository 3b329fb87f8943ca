import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { LocalContentStore } from '@berth/content-local';
import {
  AlreadyExistsError,
  type Descriptor,
  type Envelope,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  type RequestContext,
} from '@berth/plugin-api';
import { EventExchangeImpl } from '../event-exchange.js';
import { MetadataGarbageCollector } from '../gc/garbage-collector.js';
import { silentLogger } from '../logger.js';
import { LevelMetadataStore } from '../metadata/level-metadata-store.js';
import { ContentServiceImpl } from './content-service.js';
import { ImagesServiceImpl } from './images-service.js';

let root: string;
let n = 0;
let meta: LevelMetadataStore;
let store: LocalContentStore;
let exchange: EventExchangeImpl;
let gc: MetadataGarbageCollector;
let content: ContentServiceImpl;
let images: ImagesServiceImpl;
let events: Envelope[];
let stopEvents: () => Promise<void>;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-images-service-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  const dir = join(root, `t${++n}`);
  meta = await LevelMetadataStore.open(join(dir, 'meta'));
  store = await LocalContentStore.open(join(dir, 'content'));
  exchange = new EventExchangeImpl();
  // A long delay: only an explicit collect() (delete with sync) runs in these tests.
  gc = new MetadataGarbageCollector(meta, store, silentLogger, { scheduleDelayMs: 60_000 });
  content = new ContentServiceImpl(store, meta, exchange, gc);
  images = new ImagesServiceImpl(meta, exchange, gc);
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
  await gc.stop();
  await stopEvents();
  await meta.close();
});

const A: RequestContext = { namespace: 'ns-a' };
const B: RequestContext = { namespace: 'ns-b' };

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';
const sha256 = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;
const desc = (text: string, mediaType = MANIFEST): Descriptor => ({ mediaType, digest: sha256(text), size: text.length });

async function put(ctx: RequestContext, text: string): Promise<string> {
  const w = await content.writer(ctx, { ref: `ref-${text}` });
  await w.write(Buffer.from(text));
  return w.commit(text.length, sha256(text));
}

async function published(): Promise<Array<{ namespace: string; topic: string; type: string; data: unknown }>> {
  await new Promise((resolve) => setImmediate(resolve));
  return events.splice(0).map((e) => ({ namespace: e.namespace, topic: e.topic, type: e.event.typeUrl, data: e.event.data }));
}

const names = async (ctx: RequestContext, filters: string[]) => (await images.list(ctx, filters)).map((i) => i.name).sort();

test('create, get, list, update and delete publish /images/* events with bare type names', async () => {
  const target = desc('manifest-1');
  const created = await images.create(A, { name: 'docker.io/library/alpine:3', target, labels: { a: '1' } });
  assert.equal(created.name, 'docker.io/library/alpine:3');
  assert.deepEqual(created.labels, { a: '1' });
  assert.deepEqual(created.target, { ...target, annotations: {} });
  assert.ok(created.createdAt instanceof Date);

  const got = await images.get(A, 'docker.io/library/alpine:3');
  assert.deepEqual(got, created);
  assert.deepEqual(await images.list(A, []), [created]);
  assert.deepEqual(await images.list(B, []), []);
  await assert.rejects(images.get(B, 'docker.io/library/alpine:3'), NotFoundError);

  const updated = await images.update(A, { name: 'docker.io/library/alpine:3', target, labels: { a: '2', b: 'x' } }, ['labels.a']);
  assert.deepEqual(updated.labels, { a: '2' });
  assert.deepEqual(updated.createdAt, created.createdAt);
  assert.ok(updated.updatedAt >= created.updatedAt);
  assert.deepEqual(await images.get(A, 'docker.io/library/alpine:3'), updated);

  await images.delete(A, 'docker.io/library/alpine:3');
  await assert.rejects(images.get(A, 'docker.io/library/alpine:3'), NotFoundError);
  assert.deepEqual(await images.list(A, []), []);

  assert.deepEqual(await published(), [
    {
      namespace: 'ns-a',
      topic: '/images/create',
      type: 'containerd.services.images.v1.ImageCreate',
      data: { name: 'docker.io/library/alpine:3', labels: { a: '1' } },
    },
    {
      namespace: 'ns-a',
      topic: '/images/update',
      type: 'containerd.services.images.v1.ImageUpdate',
      data: { name: 'docker.io/library/alpine:3', labels: { a: '2' } },
    },
    {
      namespace: 'ns-a',
      topic: '/images/delete',
      type: 'containerd.services.images.v1.ImageDelete',
      data: { name: 'docker.io/library/alpine:3' },
    },
  ]);
});

test('images are per namespace; creating a name twice is AlreadyExists', async () => {
  await images.create(A, { name: 'img', target: desc('a') });
  await images.create(B, { name: 'img', target: desc('b') });
  await published();
  await assert.rejects(
    images.create(A, { name: 'img', target: desc('c') }),
    (err: unknown) => err instanceof AlreadyExistsError && /img/.test(err.message),
  );
  assert.equal((await images.get(A, 'img')).target.digest, sha256('a'));
  assert.equal((await images.get(B, 'img')).target.digest, sha256('b'));
  assert.deepEqual(await published(), []);
});

test('update, get and delete of a missing image are NotFound without events', async () => {
  await assert.rejects(images.get(A, 'nope'), NotFoundError);
  await assert.rejects(images.update(A, { name: 'nope', target: desc('x') }, ['target']), NotFoundError);
  await assert.rejects(images.update(A, { name: 'nope', target: desc('x') }, []), NotFoundError);
  await assert.rejects(images.delete(A, 'nope'), NotFoundError);
  assert.deepEqual(await published(), []);
});

test('invalid images are InvalidArgument', async () => {
  const fails = (p: Promise<unknown>) => assert.rejects(p, InvalidArgumentError);
  await fails(images.create(A, { name: '', target: desc('x') }));
  await fails(images.create(A, { name: 'x', target: { ...desc('x'), mediaType: '' } }));
  await fails(images.create(A, { name: 'x', target: { ...desc('x'), digest: 'sha256:1234' } }));
  await fails(images.create(A, { name: 'x', target: { ...desc('x'), digest: 'not-a-digest' } }));
  await fails(images.create(A, { name: 'x', target: { ...desc('x'), size: -1 } }));
  await fails(images.create(A, { name: 'x', target: undefined as unknown as Descriptor }));
  await fails(images.create(A, { name: 'x', target: desc('x'), labels: { '': 'v' } }));
  await fails(images.get(A, ''));
  await fails(images.delete(A, ''));
  await fails(images.update(A, { name: '', target: desc('x') }, []));
  await images.create(A, { name: 'x', target: desc('x') });
  await fails(images.update(A, { name: 'x', target: { ...desc('y'), digest: 'bad' } }, ['target']));
  await fails(images.update(A, { name: 'x', target: desc('y'), labels: { big: 'v'.repeat(5000) } }, ['labels.big']));
  assert.equal((await images.get(A, 'x')).target.digest, sha256('x'));
  assert.deepEqual(
    (await published()).map((e) => e.topic),
    ['/images/create'],
  );
  await assert.rejects(images.list(A, ['name==']), InvalidArgumentError);
});

test('update applies label, target and annotation paths; no paths replaces labels and target', async () => {
  const first = desc('first');
  await images.create(A, { name: 'img', target: { ...first, annotations: { keep: 'k' } }, labels: { a: '1', b: '2', 'x.y': '3' } });

  // labels.<key>: set, delete with an empty value, and keys with dots.
  let image = await images.update(A, { name: 'img', target: desc('ignored'), labels: { a: 'one', b: '', 'x.y': 'xy' } }, [
    'labels.a',
    'labels.b',
    'labels.x.y',
  ]);
  assert.deepEqual(image.labels, { a: 'one', 'x.y': 'xy' });
  // Only the named paths change.
  assert.equal(image.target.digest, first.digest);

  // labels: all of them.
  image = await images.update(A, { name: 'img', target: desc('ignored'), labels: { only: 'this' } }, ['labels']);
  assert.deepEqual(image.labels, { only: 'this' });

  // target: the whole descriptor, annotations included.
  const second = { ...desc('second', INDEX), annotations: { 'org.opencontainers.image.ref.name': '2' } };
  image = await images.update(A, { name: 'img', target: second, labels: {} }, ['target']);
  assert.deepEqual(image.target, second);
  assert.deepEqual(image.labels, { only: 'this' });

  // annotations: the target's annotations alone.
  image = await images.update(A, { name: 'img', target: { ...desc('ignored'), annotations: { a: 'b' } } }, ['annotations']);
  assert.deepEqual(image.target, { ...second, annotations: { a: 'b' } });
  // annotations.<key>: one annotation, as containerd allows.
  image = await images.update(A, { name: 'img', target: { ...desc('ignored'), annotations: { c: 'd' } } }, [
    'annotations.c',
    'annotations.a',
  ]);
  assert.deepEqual(image.target.annotations, { c: 'd' });
  assert.equal(image.target.digest, second.digest);

  // Unknown paths: InvalidArgument, nothing changes.
  for (const path of ['name', 'createdAt', 'target.digest', 'labelsx']) {
    await assert.rejects(images.update(A, { name: 'img', target: desc('z') }, [path]), InvalidArgumentError);
  }
  assert.deepEqual(await images.get(A, 'img'), image);

  // No paths: labels and target are replaced.
  const third = desc('third');
  image = await images.update(A, { name: 'img', target: third, labels: { fresh: 'yes', empty: '' } }, []);
  assert.deepEqual(image.labels, { fresh: 'yes' });
  assert.deepEqual(image.target, { ...third, annotations: {} });
  // ...so without a target it is InvalidArgument.
  await assert.rejects(images.update(A, { name: 'img', target: undefined as unknown as Descriptor }, []), InvalidArgumentError);
  assert.deepEqual(await images.get(A, 'img'), image);
});

test('list filters on name, labels and target fields', async () => {
  await images.create(A, { name: 'docker.io/library/alpine:3', target: desc('alpine'), labels: { os: 'linux', tier: 'base' } });
  await images.create(A, { name: 'docker.io/library/busybox:1', target: desc('busybox', INDEX), labels: { os: 'linux' } });
  await images.create(A, { name: 'example.com/app:latest', target: desc('app'), labels: { tier: 'app' } });

  assert.deepEqual(await names(A, ['name==example.com/app:latest']), ['example.com/app:latest']);
  assert.deepEqual(await names(A, ['name~=^docker\\.io/']), ['docker.io/library/alpine:3', 'docker.io/library/busybox:1']);
  assert.deepEqual(await names(A, ['name~=busy']), ['docker.io/library/busybox:1']);
  assert.deepEqual(await names(A, ['labels.os==linux']), ['docker.io/library/alpine:3', 'docker.io/library/busybox:1']);
  assert.deepEqual(await names(A, ['labels.tier']), ['docker.io/library/alpine:3', 'example.com/app:latest']);
  assert.deepEqual(await names(A, ['labels.os==linux,labels.tier==base']), ['docker.io/library/alpine:3']);
  assert.deepEqual(await names(A, [`target.digest==${sha256('app')}`]), ['example.com/app:latest']);
  assert.deepEqual(await names(A, [`target.mediatype==${JSON.stringify(INDEX)}`]), ['docker.io/library/busybox:1']);
  assert.deepEqual(await names(A, [`target.mediatype==${MANIFEST}`]), ['docker.io/library/alpine:3', 'example.com/app:latest']);
  assert.deepEqual(await names(A, ['name==example.com/app:latest', 'labels.tier==base']), [
    'docker.io/library/alpine:3',
    'example.com/app:latest',
  ]);
  assert.deepEqual(await names(A, ['name==nothing']), []);
});

test('delete with a target that is not the image target is FailedPrecondition', async () => {
  await images.create(A, { name: 'img', target: desc('current') });
  await published();
  await assert.rejects(images.delete(A, 'img', { target: desc('other') }), FailedPreconditionError);
  await images.get(A, 'img');
  assert.deepEqual(await published(), []);
  await images.delete(A, 'img', { target: desc('current') });
  await assert.rejects(images.get(A, 'img'), NotFoundError);
});

test('delete with sync returns after garbage collection removed what only the image held', async () => {
  const manifest = await put(A, 'the manifest');
  const kept = await put(A, 'held by another image');
  await images.create(A, { name: 'doomed', target: desc('the manifest') });
  await images.create(A, { name: 'stays', target: desc('held by another image') });
  // Without sync the content is still there when delete returns (a collection is only scheduled).
  await images.create(A, { name: 'doomed2', target: desc('the manifest') });
  await images.delete(A, 'doomed2');
  await content.info(A, manifest);

  await images.delete(A, 'doomed', { sync: true });
  await assert.rejects(content.info(A, manifest), NotFoundError);
  await assert.rejects(store.info(manifest), NotFoundError);
  await content.info(A, kept);
  await store.info(kept);
});

test('every call needs a namespace', async () => {
  const none: RequestContext = {};
  const fails = (p: Promise<unknown>) => assert.rejects(p, FailedPreconditionError);
  await fails(images.get(none, 'x'));
  await fails(images.list(none, []));
  await fails(images.create(none, { name: 'x', target: desc('x') }));
  await fails(images.update(none, { name: 'x', target: desc('x') }, []));
  await fails(images.delete(none, 'x'));
});
