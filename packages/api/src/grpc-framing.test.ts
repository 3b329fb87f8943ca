import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeStatusMessage, FramingError, frameMessage, MessageDecoder, parseTimeout } from './grpc-framing.js';

test('messages come out whole however the chunks split them', () => {
  const messages = [Buffer.from('first'), Buffer.alloc(0), Buffer.alloc(40_000, 7), Buffer.from('last')];
  const wire = Buffer.concat(messages.map(frameMessage));
  for (const size of [1, 3, 5, 16_384, wire.length]) {
    const decoder = new MessageDecoder(1 << 20);
    const out: Buffer[] = [];
    for (let at = 0; at < wire.length; at += size) out.push(...decoder.push(wire.subarray(at, at + size)));
    assert.deepEqual(out, messages, `chunks of ${size}`);
    assert.ok(decoder.idle);
  }
  const partial = new MessageDecoder(100);
  assert.deepEqual(partial.push(frameMessage(Buffer.from('abc')).subarray(0, 6)), []);
  assert.equal(partial.idle, false);
});

test('a message over the limit and a compressed one are refused with their codes', () => {
  assert.throws(() => new MessageDecoder(10).push(frameMessage(Buffer.alloc(11))), (err: FramingError) => err.code === 8);
  const compressed = frameMessage(Buffer.from('x'));
  compressed[0] = 1;
  assert.throws(() => new MessageDecoder(10).push(compressed), (err: FramingError) => err.code === 12);
});

test('a message over the preallocation size (4 MiB) is gathered from its pieces too', () => {
  const messages = [Buffer.alloc(3 * 1024 * 1024, 1), Buffer.alloc(5 * 1024 * 1024 + 1, 9), Buffer.from('after')];
  const wire = Buffer.concat(messages.map(frameMessage));
  for (const size of [16_384, 65_543, wire.length]) {
    const decoder = new MessageDecoder(8 << 20);
    const out: Buffer[] = [];
    for (let at = 0; at < wire.length; at += size) out.push(...decoder.push(wire.subarray(at, at + size)));
    assert.deepEqual(out, messages, `chunks of ${size}`);
    assert.ok(decoder.idle);
  }
});

test('grpc-timeout in every unit; malformed ones are ignored', () => {
  assert.equal(parseTimeout('2H'), 7_200_000);
  assert.equal(parseTimeout('3M'), 180_000);
  assert.equal(parseTimeout('10S'), 10_000);
  assert.equal(parseTimeout('250m'), 250);
  assert.equal(parseTimeout('1500u'), 1.5);
  assert.equal(parseTimeout('2000000n'), 2);
  for (const bad of [undefined, '', '10', 'S', '123456789S', '1.5S', '10s']) assert.equal(parseTimeout(bad), undefined, String(bad));
});

test('status messages: printable ASCII stays, the rest and % are percent-encoded', () => {
  assert.equal(encodeStatusMessage('not found: a/b'), 'not found: a/b');
  assert.equal(encodeStatusMessage('100%\n'), '100%25%0A');
  assert.equal(encodeStatusMessage('é'), '%C3%A9');
});
