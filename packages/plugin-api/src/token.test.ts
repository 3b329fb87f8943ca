import assert from 'node:assert/strict';
import { test } from 'node:test';
import { token } from './token.js';

test('tokens of the same name share a key, as a second copy of the package would make them', () => {
  const a = token<number>('test.Same');
  const b = token<number>('test.Same');
  assert.notEqual(a, b);
  assert.equal(a.key, b.key);
  assert.equal(a.key, Symbol.for('berth.token.test.Same'));
  assert.notEqual(a.key, token<number>('test.Other').key);
});

test('tokens are single unless declared multi, and frozen', () => {
  const single = token<number>('test.Single');
  const multi = token<number>('test.Multi', { multi: true });
  assert.equal(single.name, 'test.Single');
  assert.equal(single.multi, false);
  assert.equal(multi.multi, true);
  assert.ok(Object.isFrozen(single));
});
