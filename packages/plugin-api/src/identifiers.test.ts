import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from './errors.js';
import { applyLabelPaths, MAX_LABEL_BYTES, validateIdentifier, validateLabels } from './identifiers.js';

// containerd's identifiers_test.go corpus.
const valid = [
  'default',
  'Default',
  'TestValidIdentifiers',
  'default-default',
  'containerd',
  'containerd.io',
  'foo.boo',
  'swarmkit.docker.io',
  '0912341234',
  'task.0.0123456789',
  'container.system-75-f19a.00',
  'underscores_are_allowed',
  'a'.repeat(76),
];
const invalid = [
  '.foo..foo',
  'foo/foo',
  'foo/..',
  'foo..foo',
  'foo.-boo',
  '-foo.boo',
  'foo.boo-',
  'but__only_tasteful_underscores',
  'zn--e9.org',
  'default--default',
  'foo bar',
  'ünïcode',
  'foo\n',
];

test('validateIdentifier accepts containerd-valid identifiers', () => {
  for (const id of valid) assert.doesNotThrow(() => validateIdentifier('name', id), id);
});

test('validateIdentifier refuses containerd-invalid identifiers, naming the field', () => {
  for (const id of invalid) {
    assert.throws(
      () => validateIdentifier('namespace.name', id),
      (err: unknown) => err instanceof InvalidArgumentError && err.message.startsWith('namespace.name: '),
      JSON.stringify(id),
    );
  }
});

test('validateIdentifier refuses the empty string', () => {
  assert.throws(() => validateIdentifier('name', ''), (err: unknown) => err instanceof InvalidArgumentError && /empty/.test(err.message));
});

test('validateIdentifier caps identifiers at 76 characters', () => {
  assert.doesNotThrow(() => validateIdentifier('name', 'a'.repeat(76)));
  assert.throws(
    () => validateIdentifier('name', 'a'.repeat(77)),
    (err: unknown) => err instanceof InvalidArgumentError && /maximum length \(76/.test(err.message),
  );
  // Valid components that add up to too much are still too long.
  assert.throws(() => validateIdentifier('name', `${'a'.repeat(40)}.${'b'.repeat(40)}`), InvalidArgumentError);
});

test('validateLabels accepts a key and value of exactly 4096 bytes', () => {
  assert.equal(MAX_LABEL_BYTES, 4096);
  assert.doesNotThrow(() => validateLabels('labels', { key: 'v'.repeat(4096 - 3) }));
  assert.doesNotThrow(() => validateLabels('labels', {}));
  assert.doesNotThrow(() => validateLabels('labels', { a: '' }));
});

test('validateLabels refuses a key and value over 4096 bytes, naming the field', () => {
  assert.throws(
    () => validateLabels('namespace.labels', { ok: 'x', key: 'v'.repeat(4096 - 2) }),
    (err: unknown) =>
      err instanceof InvalidArgumentError && err.message.startsWith('namespace.labels: ') && /4096/.test(err.message),
  );
  // The key counts too.
  assert.throws(() => validateLabels('labels', { ['k'.repeat(4000)]: 'v'.repeat(97) }), InvalidArgumentError);
});

test('validateLabels counts UTF-8 bytes, not characters', () => {
  // 'é' is two bytes: 2047 of them plus a one-byte key and value is 4096 bytes, 2049 characters.
  assert.doesNotThrow(() => validateLabels('labels', { k: `${'é'.repeat(2047)}x` }));
  // 2048 of them is 4097 bytes but only 2049 characters.
  assert.throws(() => validateLabels('labels', { k: 'é'.repeat(2048) }), InvalidArgumentError);
  // Four-byte characters in the key.
  assert.throws(() => validateLabels('labels', { ['😀'.repeat(1024)]: 'v' }), InvalidArgumentError);
  assert.doesNotThrow(() => validateLabels('labels', { ['😀'.repeat(1023)]: 'vvvv' }));
});

test('validateLabels refuses an empty key', () => {
  assert.throws(() => validateLabels('labels', { '': 'v' }), InvalidArgumentError);
});

test('applyLabelPaths with no paths replaces all labels, dropping empty values', () => {
  assert.deepEqual(applyLabelPaths({ a: '1', b: '2' }, { c: '3', d: '' }, []), { c: '3' });
  assert.deepEqual(applyLabelPaths({ a: '1' }, {}, []), {});
});

test('applyLabelPaths "labels" replaces all labels', () => {
  assert.deepEqual(applyLabelPaths({ a: '1', b: '2' }, { b: 'x', c: '3', e: '' }, ['labels']), { b: 'x', c: '3' });
});

test('applyLabelPaths "labels.<key>" sets or deletes one label and leaves the rest', () => {
  const current = { a: '1', b: '2', c: '3' };
  const next = applyLabelPaths(current, { a: 'new', b: '', z: 'ignored' }, ['labels.a', 'labels.b', 'labels.d']);
  assert.deepEqual(next, { a: 'new', c: '3' });
  // A label absent from the update is deleted too.
  assert.deepEqual(applyLabelPaths(current, {}, ['labels.c']), { a: '1', b: '2' });
  // The input is not modified.
  assert.deepEqual(current, { a: '1', b: '2', c: '3' });
});

test('applyLabelPaths takes everything after the first dot as the key', () => {
  const next = applyLabelPaths(
    { 'io.containerd.gc.root': 'old', other: 'kept' },
    { 'io.containerd.gc.root': 'true', 'io.containerd': 'x' },
    ['labels.io.containerd.gc.root'],
  );
  assert.deepEqual(next, { 'io.containerd.gc.root': 'true', other: 'kept' });
});

test('applyLabelPaths refuses unknown paths', () => {
  for (const path of ['name', 'label.a', 'labelsx', 'Labels']) {
    assert.throws(
      () => applyLabelPaths({}, {}, [path]),
      (err: unknown) => err instanceof InvalidArgumentError && err.message.includes(JSON.stringify(path)),
      path,
    );
  }
});

test('applyLabelPaths treats "__proto__" as an ordinary label key', () => {
  const current = JSON.parse('{"__proto__":"old","a":"1"}') as Record<string, string>;
  const removed = applyLabelPaths(current, {}, ['labels.__proto__']);
  assert.deepEqual(Object.entries(removed), [['a', '1']]);
  const set = applyLabelPaths({}, JSON.parse('{"__proto__":"v"}') as Record<string, string>, ['labels.__proto__']);
  assert.deepEqual(Object.entries(set), [['__proto__', 'v']]);
});
