import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GcPacer } from './pacer.js';

const defaults = { scheduleDelayMs: 100, pauseThreshold: 0.02, deletionThreshold: 0 };

test('before any collection a deletion collects after the schedule delay', () => {
  const pacer = new GcPacer(defaults);
  assert.equal(pacer.deleted(5000), 5100);
  assert.equal(pacer.intervalMs(), 1000);
});

test('after collections, the interval keeps their average within the pause threshold', () => {
  const pacer = new GcPacer(defaults);
  pacer.started();
  pacer.finished(2, 1000);
  pacer.started();
  pacer.finished(4, 2000);
  // avg 3 ms: 3 / 0.02 - 3 = 147 ms between the end of one and the start of the next.
  assert.ok(Math.abs(pacer.intervalMs() - 147) < 1e-9);
  assert.ok(Math.abs(pacer.deleted(2010) - 2147) < 1e-9);
  // Long after the last collection the schedule delay alone counts.
  assert.equal(pacer.deleted(9000), 9100);
});

test('the deletion threshold collects after the delay alone once reached', () => {
  const pacer = new GcPacer({ ...defaults, deletionThreshold: 3 });
  pacer.started();
  pacer.finished(10, 1000);
  assert.equal(pacer.deleted(1001), 1000 + 490);
  assert.equal(pacer.deleted(1002), 1000 + 490);
  assert.equal(pacer.deleted(1003), 1103);
  // A collection starts: its deletions are swept, the count starts again.
  pacer.started();
  pacer.finished(10, 1200);
  assert.equal(pacer.deleted(1201), 1200 + 490);
});

test('the pause threshold is clamped as containerd clamps it', () => {
  const high = new GcPacer({ ...defaults, pauseThreshold: 3 });
  high.started();
  high.finished(8, 100);
  assert.equal(high.intervalMs(), 8); // 0.5: as long again as a collection takes
  const zero = new GcPacer({ ...defaults, pauseThreshold: -1 });
  zero.started();
  zero.finished(8, 100);
  assert.equal(zero.intervalMs(), 1000);
});
