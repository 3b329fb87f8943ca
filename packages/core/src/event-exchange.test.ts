import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Envelope, InvalidArgumentError, UnavailableError } from '@berth/plugin-api';
import { EventExchangeImpl, validateTopic } from './event-exchange.js';

const event = (data: Record<string, unknown> = {}) => ({ typeUrl: 'containerd.events.Test', data });

/**
 * Everything a subscription has received so far: publishing delivers
 * synchronously, so once the queue is empty the next read waits, and a
 * macrotask ends the read.
 */
async function received(sub: AsyncIterator<Envelope>): Promise<Envelope[]> {
  const out: Envelope[] = [];
  for (;;) {
    const next = pending.get(sub) ?? sub.next();
    pending.delete(sub);
    const r = await Promise.race([next, new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined)))]);
    if (r === undefined) {
      pending.set(sub, next);
      return out;
    }
    if (r.done) return out;
    out.push(r.value);
  }
}
/** The read left waiting by `received`, to await after aborting. */
const pending = new Map<AsyncIterator<Envelope>, Promise<IteratorResult<Envelope>>>();

function subscribe(exchange: EventExchangeImpl, filters: string[] = []) {
  const abort = new AbortController();
  const it = exchange.subscribe(filters, abort.signal)[Symbol.asyncIterator]();
  return {
    it,
    received: () => received(it),
    async close() {
      abort.abort();
      const left = pending.get(it);
      pending.delete(it);
      if (left) assert.equal((await left).done, true);
    },
  };
}

test('publish delivers an envelope with timestamp, namespace, topic and event', async () => {
  const exchange = new EventExchangeImpl();
  const sub = subscribe(exchange);
  const before = Date.now();
  await exchange.publish('default', '/namespaces/create', event({ name: 'x' }));
  const [env, ...rest] = await sub.received();
  assert.equal(rest.length, 0);
  assert.ok(env);
  assert.ok(env.timestamp instanceof Date);
  assert.ok(env.timestamp.getTime() >= before && env.timestamp.getTime() <= Date.now());
  assert.equal(env.namespace, 'default');
  assert.equal(env.topic, '/namespaces/create');
  assert.deepEqual(env.event, { typeUrl: 'containerd.events.Test', data: { name: 'x' } });
  await sub.close();
});

test('every subscriber gets every event in publish order', async () => {
  const exchange = new EventExchangeImpl();
  const one = subscribe(exchange);
  const two = subscribe(exchange);
  for (let i = 0; i < 20; i++) await exchange.publish(i % 2 ? 'ns-a' : 'ns-b', `/t/e${i}`, event({ i }));
  for (const sub of [one, two]) {
    assert.deepEqual((await sub.received()).map((e) => e.event.data?.i), [...Array(20).keys()]);
    await sub.close();
  }
});

test('a subscriber sees only events published after it subscribed', async () => {
  const exchange = new EventExchangeImpl();
  await exchange.publish('default', '/t/before', event());
  // subscribe() registers at once, before the first read.
  const sub = subscribe(exchange);
  await exchange.publish('default', '/t/after', event());
  assert.deepEqual((await sub.received()).map((e) => e.topic), ['/t/after']);
  await sub.close();
});

async function topicsMatching(filters: string[]): Promise<string[]> {
  const exchange = new EventExchangeImpl();
  const sub = subscribe(exchange, filters);
  await exchange.publish('default', '/images/create', event({ name: 'docker.io/library/alpine:latest', size: 3 }));
  await exchange.publish('default', '/images/delete', event({ name: 'docker.io/library/busybox:latest' }));
  await exchange.publish('other', '/images/create', event({ name: 'example.com/app', meta: { arch: 'arm64' } }));
  await exchange.publish('other', '/namespaces/create', event({ name: 'other' }));
  await exchange.publish('k8s.io', '/tasks/exit', event({ containerId: 'c1', exitStatus: 0 }));
  const got = (await sub.received()).map((e) => `${e.namespace}${e.topic}`);
  await sub.close();
  return got;
}

test('filters select by topic, namespace and event fields', async () => {
  assert.deepEqual(await topicsMatching(['topic=="/images/create"']), ['default/images/create', 'other/images/create']);
  assert.deepEqual(await topicsMatching(['namespace==other']), ['other/images/create', 'other/namespaces/create']);
  assert.deepEqual(await topicsMatching(['namespace!=other']), [
    'default/images/create',
    'default/images/delete',
    'k8s.io/tasks/exit',
  ]);
  assert.deepEqual(await topicsMatching(['topic~="^/images/"']), [
    'default/images/create',
    'default/images/delete',
    'other/images/create',
  ]);
  // AND within one filter.
  assert.deepEqual(await topicsMatching(['topic~="^/images/",namespace==other']), ['other/images/create']);
  // OR across filters.
  assert.deepEqual(await topicsMatching(['topic=="/tasks/exit"', 'namespace==other,topic~=namespaces']), [
    'other/namespaces/create',
    'k8s.io/tasks/exit',
  ]);
  // Event data fields, nested ones and non-strings included.
  assert.deepEqual(await topicsMatching(['event.name~=busybox']), ['default/images/delete']);
  assert.deepEqual(await topicsMatching(['event.meta.arch==arm64']), ['other/images/create']);
  assert.deepEqual(await topicsMatching(['event.exitStatus==0']), ['k8s.io/tasks/exit']);
  assert.deepEqual(await topicsMatching(['event.size']), ['default/images/create']);
  // An object is not a value.
  assert.deepEqual(await topicsMatching(['event.meta']), []);
  assert.deepEqual(await topicsMatching(['nothing==here']), []);
  // No filter, or the empty one, means everything.
  assert.equal((await topicsMatching([])).length, 5);
  assert.equal((await topicsMatching([''])).length, 5);
});

test('an invalid filter is refused at subscribe time', () => {
  const exchange = new EventExchangeImpl();
  for (const bad of ['topic==', 'topic=="unterminated', ',', 'topic~=(']) {
    assert.throws(() => exchange.subscribe([bad]), InvalidArgumentError, bad);
  }
  assert.equal(exchange.subscriberCount, 0);
});

test('validateTopic follows containerd', () => {
  for (const ok of ['/test', '/test/test', '/tasks/exit', '/a.b/c-d/e_f', '/0']) assert.doesNotThrow(() => validateTopic(ok), ok);
  const cases: Array<[string, RegExp]> = [
    ['', /must not be empty/],
    ['test', /must start with '\/'/],
    ['test/test', /must start with '\/'/],
    ['/', /at least one component/],
    ['//', /component ""/],
    ['/test/', /component ""/],
    ['/test//test', /component ""/],
    ['/test/_', /component "_"/],
    ['/test/a b', /component "a b"/],
    ['/test/%', /component "%"/],
    [`/${'a'.repeat(77)}`, /failed validation on component/],
  ];
  for (const [topic, message] of cases) {
    assert.throws(
      () => validateTopic(topic),
      (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      JSON.stringify(topic),
    );
  }
});

test('publish refuses invalid topics, namespaces and events, delivering nothing', async () => {
  const exchange = new EventExchangeImpl();
  const sub = subscribe(exchange);
  await assert.rejects(exchange.publish('default', 'no-slash', event()), InvalidArgumentError);
  await assert.rejects(exchange.publish('', '/t', event()), InvalidArgumentError);
  await assert.rejects(exchange.publish('bad/ns', '/t', event()), InvalidArgumentError);
  await assert.rejects(exchange.publish('default', '/t', { typeUrl: '' }), InvalidArgumentError);
  await assert.rejects(exchange.publish('default', '/t', undefined as never), InvalidArgumentError);
  assert.deepEqual(await sub.received(), []);
  await sub.close();
});

test('forward keeps the envelope as made elsewhere', async () => {
  const exchange = new EventExchangeImpl();
  const sub = subscribe(exchange, ['event.name==x']);
  const all = subscribe(exchange);
  const timestamp = new Date('2020-01-02T03:04:05.678Z');
  const value = new Uint8Array([1, 2, 3]);
  await exchange.forward({ timestamp, namespace: 'k8s.io', topic: '/tasks/oom', event: { typeUrl: 'containerd.events.TaskOOM', value } });
  await assert.rejects(exchange.forward({ timestamp, namespace: 'k8s.io', topic: 'bad', event: { typeUrl: 't' } }), InvalidArgumentError);
  await assert.rejects(exchange.forward({ timestamp, namespace: '-bad', topic: '/t', event: { typeUrl: 't' } }), InvalidArgumentError);
  const [env, ...rest] = await all.received();
  assert.equal(rest.length, 0);
  assert.equal(env?.timestamp.getTime(), timestamp.getTime());
  assert.equal(env?.namespace, 'k8s.io');
  assert.equal(env?.topic, '/tasks/oom');
  assert.deepEqual(env?.event.value, value);
  // Forwarded events carry bytes only: event fields never match.
  assert.deepEqual(await sub.received(), []);
  await sub.close();
  await all.close();
});

test('aborting ends a waiting iteration and removes the subscriber', async () => {
  const exchange = new EventExchangeImpl();
  const abort = new AbortController();
  const seen: string[] = [];
  const done = (async () => {
    for await (const env of exchange.subscribe([], abort.signal)) seen.push(env.topic);
  })();
  assert.equal(exchange.subscriberCount, 1);
  await exchange.publish('default', '/t/one', event());
  await new Promise((resolve) => setImmediate(resolve));
  abort.abort();
  await done;
  assert.deepEqual(seen, ['/t/one']);
  assert.equal(exchange.subscriberCount, 0);
  await exchange.publish('default', '/t/two', event());
  assert.deepEqual(seen, ['/t/one']);
});

test('aborting before the first read removes the subscriber too', async () => {
  const exchange = new EventExchangeImpl();
  const abort = new AbortController();
  const sub = exchange.subscribe([], abort.signal);
  assert.equal(exchange.subscriberCount, 1);
  abort.abort();
  assert.equal(exchange.subscriberCount, 0);
  await exchange.publish('default', '/t/late', event());
  const got: Envelope[] = [];
  for await (const env of sub) got.push(env);
  assert.deepEqual(got, []);

  const already = AbortSignal.abort();
  exchange.subscribe([], already);
  assert.equal(exchange.subscriberCount, 0);
});

test('stopping iteration removes the subscriber', async () => {
  const exchange = new EventExchangeImpl();
  const sub = exchange.subscribe([]);
  await exchange.publish('default', '/t/one', event());
  await exchange.publish('default', '/t/two', event());
  for await (const env of sub) {
    assert.equal(env.topic, '/t/one');
    break;
  }
  assert.equal(exchange.subscriberCount, 0);
});

test('a subscriber that falls 65536 events behind is cut off with Unavailable', async () => {
  const exchange = new EventExchangeImpl();
  const slow = exchange.subscribe([]);
  // Another subscriber whose filter lets few events through is not cut off.
  const other = subscribe(exchange, ['topic=="/t/after"']);
  const total = 65_537;
  const published: Promise<void>[] = [];
  // Delivery happens inside publish(), synchronously; await all at the end to keep the test fast.
  for (let i = 0; i < total; i++) published.push(exchange.publish('default', '/t/e', event({ i })));
  await Promise.all(published);
  assert.equal(exchange.subscriberCount, 1);
  await exchange.publish('default', '/t/after', event());
  let count = 0;
  let last: unknown;
  await assert.rejects(
    (async () => {
      for await (const env of slow) {
        last = env.event.data?.i;
        count++;
      }
    })(),
    (err: unknown) => err instanceof UnavailableError && /65536/.test(err.message),
  );
  // What was queued before the cut-off still arrives, in order; nothing after it.
  assert.equal(count, 65_536);
  assert.equal(last, 65_535);
  assert.deepEqual((await other.received()).map((e) => e.topic), ['/t/after']);
  await other.close();
  assert.equal(exchange.subscriberCount, 0);
});
