import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { trimMemoryWhenIdle } from './idle-trim.js';
import { releaseFreeMemory } from './malloc.js';

test('malloc_trim is there on glibc', () => {
  assert.equal(releaseFreeMemory(), true);
});

test('an idle process whose resident set grew is trimmed once, and not again until it grows', async () => {
  const trims: [number, number][] = [];
  const trim = trimMemoryWhenIdle({ intervalMs: 100, growthBytes: 8 * 2 ** 20, onTrim: (before, after) => trims.push([before, after]) });
  try {
    // 64 MiB in 64 KiB pieces (glibc's heap, not mmap), all but the last dropped: the free
    // space lies below a live chunk, where only malloc_trim reaches it.
    const pieces = Array.from({ length: 1024 }, () => Buffer.alloc(64 * 1024, 1));
    const last = pieces.pop();
    pieces.length = 0;
    for (const deadline = Date.now() + 5000; trims.length === 0 && Date.now() < deadline; ) await sleep(50);
    assert.equal(trims.length, 1, 'one trim after the growth');
    const [before, after] = trims[0];
    assert.ok(after < before, `RSS ${before} -> ${after}`);
    await sleep(500);
    assert.equal(trims.length, 1, 'no growth since, no second trim');
    assert.equal(last?.length, 64 * 1024);
  } finally {
    trim.stop();
  }
});

test('a busy event loop is never trimmed', async () => {
  let trims = 0;
  const trim = trimMemoryWhenIdle({ intervalMs: 50, growthBytes: 0, idleBelow: 0, onTrim: () => trims++ });
  try {
    await sleep(300);
    assert.equal(trims, 0, 'utilisation is never below 0');
  } finally {
    trim.stop();
  }
});
