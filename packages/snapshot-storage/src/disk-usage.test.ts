import assert from 'node:assert/strict';
import { link, mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { diskUsage } from './disk-usage.js';

test('diskUsage counts every inode once and allocated blocks, as containerd', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'berth-du-'));
  try {
    const empty = await diskUsage(dir);
    assert.equal(empty.inodes, 1, 'the root itself');
    await writeFile(join(dir, 'data'), Buffer.alloc(100_000, 1));
    await link(join(dir, 'data'), join(dir, 'data-link'));
    await mkdir(join(dir, 'sub'));
    await symlink('../data', join(dir, 'sub', 'sym'));
    await writeFile(join(dir, 'sparse'), '');
    await truncate(join(dir, 'sparse'), 1 << 30);
    const u = await diskUsage(dir);
    assert.equal(u.inodes, 5, 'root, data (two names), sub, sym, sparse');
    assert.ok(u.size >= 100_000, `size ${u.size} covers the data`);
    assert.ok(u.size < 200_000, `size ${u.size}: the hard link is not counted twice, the sparse file by its blocks`);
    await assert.rejects(diskUsage(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
