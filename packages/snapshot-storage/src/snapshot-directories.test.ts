import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SnapshotDirectories } from './snapshot-directories.js';

/** A test body given a fresh `<tmp>/snapshots`, which is removed afterwards whatever happens. */
function withDirs(fn: (dirs: SnapshotDirectories) => Promise<void>): () => Promise<void> {
  return async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-dirs-'));
    try {
      const dirs = new SnapshotDirectories(join(root, 'snapshots'));
      await dirs.init();
      await fn(dirs);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  };
}

test('SnapshotDirectories builds under a temporary name, installs over crash leftovers, removes aside', withDirs(async (dirs) => {
  const temp = await dirs.createTemp();
  assert.match(temp, /\/snapshots\/new-/);
  await writeFile(join(temp, 'f'), 'new');
  // What a crash between rename and metadata batch leaves: a directory named by the id that comes next.
  await mkdir(join(dirs.path('7'), 'old'), { recursive: true });
  await dirs.install(temp, '7');
  assert.deepEqual(await readdir(dirs.path('7')), ['f']);
  assert.equal(await readFile(join(dirs.path('7'), 'f'), 'utf8'), 'new');
  assert.deepEqual(await readdir(dirs.dir), ['7'], 'the leftover went, nothing else stayed');

  await dirs.remove('7');
  assert.equal((await readdir(dirs.dir)).some((n) => n === '7'), false, 'the id is free when remove returns');
  await dirs.remove('7'); // already gone is fine
  await dirs.settle();
  assert.deepEqual(await readdir(dirs.dir), [], 'deleted once settled');
}));

test('a directory being deleted after remove is spared by unowned, and settle waits for it', withDirs(async (dirs) => {
  for (const id of ['1', '2']) {
    const temp = await dirs.createTemp();
    for (let i = 0; i < 200; i++) await writeFile(join(temp, `f${i}`), 'x');
    await dirs.install(temp, id);
  }
  await dirs.remove('1');
  await dirs.remove('2');
  // Still deleting: cleanup must not take (or fail on) what remove has in hand.
  const unowned = await dirs.unowned(new Set());
  assert.deepEqual(unowned, []);
  await dirs.settle();
  assert.deepEqual(await readdir(dirs.dir), []);
}));

test('SnapshotDirectories.unowned finds what no snapshot owns and spares work in progress', withDirs(async (dirs) => {
  for (const name of ['1', '2', 'new-crashed', 'rm-3-abcd']) await mkdir(join(dirs.dir, name, 'fs'), { recursive: true });
  const building = await dirs.createTemp();
  const unowned = await dirs.unowned(new Set(['1']));
  assert.equal(unowned.length, 3);
  assert.ok(unowned.every((p) => /\/rm-/.test(p)), 'renamed aside at once');
  await dirs.removeAll(unowned);
  assert.deepEqual((await readdir(dirs.dir)).sort(), ['1', building.slice(dirs.dir.length + 1)].sort());
  await dirs.discard(building);
  assert.deepEqual(await readdir(dirs.dir), ['1']);
}));
