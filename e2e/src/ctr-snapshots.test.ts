import { type CachedImage, cachedPreset } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ctr, run, startBerthd, type TestDaemon } from './harness.js';
import { pushWithSkopeo, startRegistry, type TestRegistry } from './registry.js';

const IMAGE = 'localhost/berth-test/busybox:latest';

/** Run the command `ctr snapshots mounts` prints, as a user would paste it. */
function mountAsPrinted(printed: string): void {
  const line = printed.trim().split('\n').at(-1) ?? '';
  const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(line);
  assert.ok(m, `not a mount command: ${line}`);
  execFileSync('mount', ['-t', m[1] as string, m[2] as string, m[3] as string, '-o', m[4] as string]);
}

const umount = (target: string) => execFileSync('umount', [target]);

/** Snapshots, diff and unpack through Debian's ctr, on berthd's overlayfs and native snapshotters. */
describe('ctr snapshots and unpack against berthd', () => {
  let d: TestDaemon;
  let image: CachedImage;
  let registry: TestRegistry;

  before(async () => {
    image = await cachedPreset('small', { ociArchive: true });
    registry = await startRegistry();
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    await registry?.stop();
  });

  test('images import unpacks; images check reports complete; images mount shows the rootfs', async () => {
    let r = await ctr(d, ['images', 'import', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /unpacking .*done/);
    r = await ctr(d, ['images', 'check']);
    assert.match(r.stdout, /complete \(\d+\/\d+\)\s+\S+ \S+\/\S+ \S+\s+true/);
    const target = join(d.dir, 'image-mount');
    mkdirSync(target);
    r = await ctr(d, ['images', 'mount', IMAGE, target]);
    assert.equal(r.code, 0, r.stderr);
    try {
      assert.match(readFileSync(join(target, 'etc', 'passwd'), 'utf8'), /^root:/m);
    } finally {
      r = await ctr(d, ['images', 'unmount', target]);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  for (const snapshotter of ['overlayfs', 'native']) {
    test(`snapshots prepare/mounts/commit/tree/info/usage/rm on ${snapshotter}`, async () => {
      const sn = ['snapshots', '--snapshotter', snapshotter];
      let r = await ctr(d, [...sn, 'prepare', 'base-active']);
      assert.equal(r.code, 0, r.stderr);
      const mnt = join(d.dir, `mnt-${snapshotter}`);
      mkdirSync(mnt, { recursive: true });
      mountAsPrinted((await ctr(d, [...sn, 'mounts', mnt, 'base-active'])).stdout);
      writeFileSync(join(mnt, 'hello'), 'base layer');
      umount(mnt);
      assert.equal((await ctr(d, [...sn, 'commit', 'base', 'base-active'])).code, 0);
      r = await ctr(d, [...sn, 'prepare', 'top', 'base']);
      assert.equal(r.code, 0, r.stderr);
      mountAsPrinted((await ctr(d, [...sn, 'mounts', mnt, 'top'])).stdout);
      try {
        assert.equal(readFileSync(join(mnt, 'hello'), 'utf8'), 'base layer');
      } finally {
        umount(mnt);
      }
      assert.match((await ctr(d, [...sn, 'tree'])).stdout, /base\n\s+\\_ top/);
      const info = JSON.parse((await ctr(d, [...sn, 'info', 'base'])).stdout) as { Kind: string; Name: string };
      assert.equal(info.Kind, 'Committed');
      assert.match((await ctr(d, [...sn, 'usage', 'base'])).stdout, /base\s+\S+ \S+\s+\d+/);
      // A parent with children cannot go; the unpacker relies on these codes.
      r = await ctr(d, [...sn, 'rm', 'base']);
      assert.match(r.stderr, /failed precondition/);
      r = await ctr(d, [...sn, 'prepare', 'top', 'base']);
      assert.match(r.stderr, /already exists/);
      r = await ctr(d, [...sn, 'prepare', 'orphan', 'no-such-parent']);
      assert.match(r.stderr, /not found/);
      assert.equal((await ctr(d, [...sn, 'rm', 'top'])).code, 0);
      assert.equal((await ctr(d, [...sn, 'rm', 'base'])).code, 0);
      assert.doesNotMatch((await ctr(d, [...sn, 'ls'])).stdout, /base|top/);
    });
  }

  test('images pull --plain-http unpacks, and images push --plain-http sends it back', async () => {
    const ref = `${registry.host}/berth/unpack:v1`;
    await pushWithSkopeo(image.layoutDir, ref);
    let r = await ctr(d, ['-n', 'pulled', 'images', 'pull', '--plain-http', ref], { timeout: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['-n', 'pulled', 'images', 'check']);
    assert.match(r.stdout, /complete .*true/);
    r = await ctr(d, ['-n', 'pulled', 'images', 'push', '--plain-http', `${registry.host}/berth/pushed:v1`, ref], {
      timeout: 60_000,
    });
    assert.equal(r.code, 0, r.stderr);
    const check = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/berth/pushed:v1`]);
    assert.equal(check.code, 0, check.stderr);
    assert.equal((JSON.parse(check.stdout) as { Digest: string }).Digest, image.result.manifest.digest);
  });
});
