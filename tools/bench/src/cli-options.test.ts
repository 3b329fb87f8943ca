import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCli } from './cli-options.js';

test('defaults: 5 rounds, every metric, no profile', () => {
  assert.deepEqual(parseCli([]), { rounds: 5, quick: false, profile: false });
});

test('--quick runs one round unless told otherwise', () => {
  assert.deepEqual(parseCli(['--quick']), { rounds: 1, quick: true, profile: false });
  assert.equal((parseCli(['--quick', '--rounds', '3']) as { rounds: number }).rounds, 3);
});

test('--only takes the names of the mode', () => {
  assert.deepEqual((parseCli(['--only', 'content-ingest-256m, import-137m-nounpack']) as { only: string[] }).only, [
    'content-ingest-256m',
    'import-137m-nounpack',
  ]);
  assert.throws(() => parseCli(['--quick', '--only', 'import-137m-nounpack']), /unknown metric import-137m-nounpack with --quick/);
  assert.throws(() => parseCli(['--only', 'nope']), /unknown metric nope/);
});

test('usage errors', () => {
  assert.throws(() => parseCli(['--rounds', '0']), /--rounds/);
  assert.throws(() => parseCli(['--rounds', 'x']), /--rounds/);
  assert.throws(() => parseCli(['--bogus']), /bogus/);
  assert.equal(parseCli(['-h']), 'help');
});

test('--profile-dir implies --profile', () => {
  const o = parseCli(['--profile-dir', 'p']) as { profile: boolean; profileDir: string };
  assert.equal(o.profile, true);
  assert.match(o.profileDir, /\/p$/);
});
