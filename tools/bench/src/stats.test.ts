import assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, megabytesPerSecond, summarize } from './stats.js';

test('median of odd and even counts, unsorted input left alone', () => {
  const input = [5, 1, 3];
  assert.equal(median(input), 3);
  assert.deepEqual(input, [5, 1, 3]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

test('summarize keeps the samples in order with median, min and max', () => {
  assert.deepEqual(summarize([30, 10, 20]), { samples: [30, 10, 20], median: 20, min: 10, max: 30 });
});

test('MB/s counts 10^6 bytes', () => {
  assert.equal(megabytesPerSecond(256 * 1024 * 1024, 1000), 268.435456);
});
