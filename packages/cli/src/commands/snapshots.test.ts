import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestDaemon, type TestDaemon } from '@berth/client/testing';
import { runCli } from '../cli.js';
import { ExitCode } from '../exit-code.js';
import { mountCommand } from './snapshots.js';

/*
 * `berth snapshots …`, `berth images import` (which unpacks) and `images
 * unpack`, in-process against the test daemon. The image is the image
 * builder's `small` preset.
 */

async function smallArchive(): Promise<{ name: string; archive: string } | string> {
  const builder = '@berth/image-builder';
  try {
    const { cachedPreset } = (await import(builder)) as {
      cachedPreset(name: string, opts: { ociArchive: boolean }): Promise<{ name: string; ociArchive?: string }>;
    };
    const img = await cachedPreset('small', { ociArchive: true });
    return { name: img.name, archive: img.ociArchive ?? '' };
  } catch (err) {
    return `no test image: ${(err as Error).message}`;
  }
}

const image = await smallArchive();
const skip = typeof image === 'string' ? image : process.getuid?.() !== 0 ? 'snapshots need root' : undefined;

it('mountCommand prints as ctr', () => {
  assert.equal(
    mountCommand({ type: 'overlay', source: 'overlay', options: ['index=off', 'lowerdir=/a:/b'] }, '/mnt'),
    'mount -t overlay overlay /mnt -o index=off,lowerdir=/a:/b',
  );
});

describe('berth snapshots', { ...(skip ? { skip } : {}) }, () => {
  let d: TestDaemon;
  const ns = `cli-snapshots-${process.pid}`;
  const berth = async (args: readonly string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await runCli(['--address', d.address, '--namespace', ns, ...args], {
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      env: {},
      interrupted: () => new AbortController().signal,
    });
    return { code, stdout, stderr };
  };
  const img = image as { name: string; archive: string };

  before(async () => {
    d = await startTestDaemon();
  });
  after(async () => {
    await d?.close();
  });

  it('images import unpacks (and --no-unpack does not); images unpack; snapshots ls/tree/info/usage', async () => {
    let r = await berth(['images', 'import', '--no-unpack', '--snapshotter', 'native', img.archive]);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /unpacking/);
    r = await berth(['snapshots', 'ls', '--snapshotter', 'native']);
    assert.equal(r.stdout, 'KEY    PARENT    KIND\n');

    r = await berth(['images', 'import', img.archive]);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    // stdout stays NAME DIGEST per image; the unpack progress is on stderr.
    assert.doesNotMatch(r.stdout, /unpacking/);
    assert.match(r.stderr, new RegExp(`unpacking ${img.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(sha256:[0-9a-f]{64}\\)\\.\\.\\.done`));
    r = await berth(['snapshots', 'ls']);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^KEY\s+PARENT\s+KIND$/);
    assert.ok(lines.length >= 2);
    assert.ok(lines.slice(1).every((l) => /^sha256:\S+\s+(sha256:\S+\s+)?Committed$/.test(l)), r.stdout);
    const keys = lines.slice(1).map((l) => l.split(/\s+/)[0] as string);

    r = await berth(['snapshots', 'tree']);
    assert.match(r.stdout, /^ sha256:/);
    if (keys.length > 1) assert.match(r.stdout, /\n {2}\\_ sha256:/);

    r = await berth(['snapshots', 'info', keys[0] as string]);
    const info = JSON.parse(r.stdout);
    assert.equal(info.Kind, 'Committed');
    assert.equal(info.Name, keys[0]);
    assert.equal(info.Labels['containerd.io/snapshot.ref'], keys[0]);

    r = await berth(['snapshots', 'usage']);
    assert.match(r.stdout, /^KEY\s+SIZE\s+INODES\n/);
    assert.equal(r.stdout.trim().split('\n').length, keys.length + 1);
    r = await berth(['snapshots', 'usage', '-b', keys[0] as string]);
    assert.match(r.stdout, /\n\S+\s+\d+\s+\d+\n$/);

    r = await berth(['images', 'unpack', '--snapshotter', 'native', img.name]);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    assert.match(r.stdout, /\.\.\.done\n$/);
    r = await berth(['snapshots', 'ls', '--snapshotter', 'native', '-q']);
    assert.deepEqual(r.stdout.trim().split('\n').sort(), [...keys].sort());
  });

  it('prepare, mounts, commit, label, view, rm', async () => {
    let r = await berth(['snapshots', 'prepare', '--target', '/mnt/x', 'work']);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    assert.match(r.stdout, /^mount -t \S+ \S+ \/mnt\/x -o \S+\n$/);
    r = await berth(['snapshots', 'mounts', '/mnt/y', 'work']);
    assert.match(r.stdout, /^mount -t \S+ \S+ \/mnt\/y -o \S+\n$/);
    r = await berth(['snapshots', 'commit', 'work-done', 'work']);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    r = await berth(['snapshots', 'info', 'work-done']);
    assert.ok(JSON.parse(r.stdout).Labels['containerd.io/gc.root']);
    r = await berth(['snapshots', 'label', 'work-done', 'a=1', 'containerd.io/gc.root=keep']);
    assert.equal(r.stdout, 'a=1,containerd.io/gc.root=keep\n');
    r = await berth(['snapshots', 'label', 'work-done', 'a=']);
    assert.equal(r.stdout, 'containerd.io/gc.root=keep\n');
    r = await berth(['snapshots', 'view', 'work-view', 'work-done']);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    r = await berth(['snapshots', 'ls', 'kind==view']);
    assert.match(r.stdout, /work-view\s+work-done\s+View/);
    r = await berth(['snapshots', 'rm', 'work-done']);
    assert.notEqual(r.code, ExitCode.Ok, 'a parent with children is not removed');
    r = await berth(['snapshots', 'rm', 'work-view', 'work-done']);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    r = await berth(['snapshots', 'info', 'work-done']);
    assert.equal(r.code, ExitCode.Failed);
    assert.match(r.stderr, /not found/);
  });
});
