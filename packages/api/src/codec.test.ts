import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeMessage, encodeMessage, fromTimestamp, toTimestamp } from './codec.js';
import { protoRoot } from './proto-root.js';
import { EventCodec } from './services/events.js';

test('timestamps keep millisecond precision both ways', () => {
  const date = new Date('2026-11-27T20:01:02.345Z');
  const ts = toTimestamp(date);
  assert.deepEqual(ts, { seconds: 1795809662, nanos: 345_000_000 });
  assert.equal(fromTimestamp(ts).toISOString(), date.toISOString());
  assert.equal(fromTimestamp(null).getTime(), 0);
});

test('messages round-trip with camelCase fields, maps and defaults filled in', () => {
  const type = protoRoot().lookupType('containerd.services.namespaces.v1.UpdateNamespaceRequest');
  const bytes = encodeMessage(type, { namespace: { name: 'a', labels: { k: 'v' } }, updateMask: { paths: ['labels.k'] } });
  assert.deepEqual(decodeMessage(type, bytes), { namespace: { name: 'a', labels: { k: 'v' } }, updateMask: { paths: ['labels.k'] } });
  const empty = decodeMessage(protoRoot().lookupType('containerd.services.namespaces.v1.GetNamespaceRequest'), new Uint8Array());
  assert.deepEqual(empty, { name: '' });
});

test('event payloads encode once from data and decode known types back to data', () => {
  const codec = new EventCodec(protoRoot());
  const payload = { typeUrl: 'containerd.events.NamespaceCreate', data: { name: 'x', labels: { a: 'b' } } };
  const bytes = codec.encode(payload);
  assert.equal(codec.encode(payload), bytes, 'cached per payload');
  const any = codec.toAny(payload);
  assert.equal(any.type_url, 'containerd.events.NamespaceCreate');
  const back = codec.decode(any);
  assert.deepEqual(back.data, { name: 'x', labels: { a: 'b' } });
  // Unknown types keep their bytes and carry no fields.
  const unknown = codec.decode({ type_url: 'example.com/Other', value: Buffer.from([1, 2]) });
  assert.equal(unknown.data, undefined);
  assert.deepEqual([...(unknown.value ?? [])], [1, 2]);
  assert.throws(() => codec.decode({ type_url: '' }), { name: 'InvalidArgumentError' });
  assert.throws(() => codec.decode({ type_url: 'containerd.events.NamespaceCreate', value: Buffer.from([0x0a, 0x64]) }), {
    name: 'InvalidArgumentError',
  });
});
