import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CpuProfile, summarizeProfile } from './cpu-profile.js';

const frame = (functionName: string, url = '', lineNumber = -1) => ({ functionName, url, lineNumber, columnNumber: 0 });

// (root) → handler → hash (native-ish) and handler → write; plus (idle) and (garbage collector).
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame('(root)'), children: [2, 5, 6] },
    { id: 2, callFrame: frame('handler', 'file:///repo/packages/x/dist/handler.js', 9), children: [3, 4] },
    { id: 3, callFrame: frame('hash', 'node:internal/crypto/hash', 100) },
    { id: 4, callFrame: frame('write', 'file:///repo/node_modules/lib/index.js', 0) },
    { id: 5, callFrame: frame('(idle)') },
    { id: 6, callFrame: frame('(garbage collector)') },
  ],
  startTime: 0,
  endTime: 10_000,
  // Each sample stands for the gap after it.
  samples: [3, 3, 4, 2, 5, 6, 3],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000],
};

test('self time per function, idle left out of the busy time', () => {
  const s = summarizeProfile(profile, { repoRoot: '/repo' });
  assert.equal(s.totalMs, 6);
  assert.equal(s.busyMs, 5);
  const self = Object.fromEntries(s.self.map((h) => [h.functionName, h.ms]));
  assert.deepEqual(self, { hash: 2, write: 1, handler: 1, '(garbage collector)': 1 });
  const hash = s.self.find((h) => h.functionName === 'hash');
  assert.equal(hash?.percent, 40);
  assert.equal(hash?.where, 'node:internal/crypto/hash:101 hash');
});

test("inclusive time covers callees, berth's own files only", () => {
  const s = summarizeProfile(profile, { repoRoot: '/repo' });
  assert.deepEqual(
    s.inclusiveOwn.map((h) => [h.where, h.ms]),
    [['packages/x/dist/handler.js:10 handler', 4]],
  );
});

test('top limits the lists', () => {
  assert.equal(summarizeProfile(profile, { top: 2 }).self.length, 2);
});

test('each self entry names the caller outside node it is mostly reached from', () => {
  const s = summarizeProfile(profile, { repoRoot: '/repo' });
  assert.equal(s.self.find((h) => h.functionName === 'hash')?.via, 'packages/x/dist/handler.js:10 handler');
  assert.equal(s.self.find((h) => h.functionName === 'handler')?.via, undefined);
});

test('windows keep only the samples taken inside them (profile clock, µs)', () => {
  const s = summarizeProfile(profile, { repoRoot: '/repo', windows: [[1500, 3500]] });
  assert.equal(s.totalMs, 2);
  assert.deepEqual(
    s.self.map((h) => [h.functionName, h.ms]),
    [
      ['write', 1],
      ['handler', 1],
    ],
  );
});
