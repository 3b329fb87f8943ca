import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RootLock, RootLockedError } from './root-lock.js';

test('one holder at a time; released locks can be taken again', () => {
  const root = mkdtempSync(join(tmpdir(), 'berth-lock-'));
  try {
    const first = RootLock.acquire(root);
    assert.equal(readFileSync(join(root, 'berthd.lock'), 'utf8').trim(), String(process.pid));
    // flock is per open file: a second open in this process conflicts like another process would.
    assert.throws(() => RootLock.acquire(root), (err: Error) => {
      assert.ok(err instanceof RootLockedError);
      assert.match(err.message, new RegExp(`another berthd \\(pid ${process.pid}\\) is already running with root ${root}`));
      return true;
    });
    first.release();
    RootLock.acquire(root).release();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
