import { type CachedImage, cachedPreset } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { berth, startBerthd, type TestDaemon } from './harness.js';

const IMAGE = 'localhost/berth-test/busybox:latest';

/** berth's own CLI unpacking images and managing snapshots on berthd, as a user would. */
describe('berth CLI: unpack and snapshots', () => {
  let d: TestDaemon;
  let image: CachedImage;

  before(async () => {
    image = await cachedPreset('small', { ociArchive: true });
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
  });

  test('images import unpacks; snapshots ls, tree, info, usage', async () => {
    let r = await berth(d, ['images', 'import', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /unpacking \S+ \(sha256:[0-9a-f]{64}\)\.\.\.done/);
    r = await berth(d, ['snapshots', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').slice(1);
    assert.ok(rows.length > 0, r.stdout);
    assert.ok(rows.every((l) => /^sha256:\S+\s+(sha256:\S+\s+)?Committed$/.test(l)), r.stdout);
    const keys = rows.map((l) => l.split(/\s+/)[0] as string);
    r = await berth(d, ['snapshots', 'tree']);
    assert.equal(r.code, 0, r.stderr);
    for (const k of keys) assert.ok(r.stdout.includes(k), r.stdout);
    r = await berth(d, ['snapshots', 'info', keys[0] as string]);
    assert.equal(JSON.parse(r.stdout).Kind, 'Committed');
    r = await berth(d, ['snapshots', 'usage']);
    assert.match(r.stdout, /^KEY\s+SIZE\s+INODES\n/);
    assert.equal(r.stdout.trim().split('\n').length, keys.length + 1);
  });

  test('images mount shows the rootfs; images unmount removes it', async () => {
    const target = join(d.dir, 'image-mount');
    mkdirSync(target);
    let r = await berth(d, ['images', 'mount', IMAGE, target]);
    assert.equal(r.code, 0, r.stderr);
    try {
      assert.match(readFileSync(join(target, 'etc', 'passwd'), 'utf8'), /^root:/m);
    } finally {
      r = await berth(d, ['images', 'unmount', target]);
      assert.equal(r.code, 0, r.stderr);
    }
    r = await berth(d, ['snapshots', 'ls', '-q']);
    assert.ok(!r.stdout.includes(target), r.stdout);
  });

  test('run --rm after a berth import', async () => {
    const r = await berth(d, ['run', '--rm', IMAGE, 'snap-echo', '/bin/echo', 'hi']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
  });
});
