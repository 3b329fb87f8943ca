import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { MountFlag, mountAll, parseMountOptions, unmountAll } from './mount.js';

test('mount options split into flags and filesystem data', () => {
  assert.deepEqual(parseMountOptions(['rbind', 'ro', 'lowerdir=/a:/b', 'index=off']), {
    flags: MountFlag.BIND | MountFlag.REC | MountFlag.RDONLY,
    data: 'lowerdir=/a:/b,index=off',
  });
  assert.equal(parseMountOptions(['ro', 'rw']).flags, 0);
});

test('overlay and read-only bind mounts, then unmountAll', { skip: process.getuid?.() !== 0 && 'needs root' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-sys-'));
  try {
    for (const d of ['lower', 'upper', 'work', 'merged', 'ro']) mkdirSync(join(dir, d));
    writeFileSync(join(dir, 'lower', 'a'), 'from lower');
    mountAll(
      [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${join(dir, 'lower')}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`] }],
      join(dir, 'merged'),
    );
    try {
      assert.equal(readFileSync(join(dir, 'merged', 'a'), 'utf8'), 'from lower');
      writeFileSync(join(dir, 'merged', 'b'), 'to upper');
      assert.equal(readFileSync(join(dir, 'upper', 'b'), 'utf8'), 'to upper');
    } finally {
      unmountAll(join(dir, 'merged'));
    }
    mountAll([{ type: 'bind', source: join(dir, 'lower'), options: ['rbind', 'ro'] }], join(dir, 'ro'));
    try {
      assert.throws(() => writeFileSync(join(dir, 'ro', 'c'), 'x'), { code: 'EROFS' });
    } finally {
      unmountAll(join(dir, 'ro'));
    }
    assert.throws(() => readFileSync(join(dir, 'merged', 'a')), { code: 'ENOENT' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
