import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BuildResult, buildImage } from './build-image.js';
import { startContainerd, type TestContainerd } from './containerd.js';
import { writeDockerArchive } from './docker-archive.js';
import { DEFAULT_BUSYBOX } from './layer-sources.js';
import { writeOciArchive } from './oci-archive.js';
import { PRESETS } from './presets.js';
import { which } from './processes.js';

async function whyNot(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'containerd needs root';
  for (const tool of ['containerd', 'ctr', 'runc']) if (!(await which(tool))) return `${tool} not installed`;
  if (!existsSync(DEFAULT_BUSYBOX)) return `${DEFAULT_BUSYBOX} missing (busybox-static)`;
  return false;
}

/** The reference implementation: Debian's containerd 1.6 imports what the builder writes and runs it. */
describe('real containerd', { skip: await whyNot() }, () => {
  let dir: string;
  let image: BuildResult;
  let c: TestContainerd;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-ctr-'));
    image = await buildImage({ ...PRESETS.small, out: join(dir, 'layout') });
    await writeOciArchive(image.layoutDir, join(dir, 'oci.tar'));
    await writeDockerArchive(image.layoutDir, join(dir, 'docker.tar'));
    c = await startContainerd({ namespace: 'berth-image-builder-test' });
  });
  after(async () => {
    await c?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  for (const kind of ['oci', 'docker'] as const) {
    test(`ctr images import reads the ${kind} archive and lists the name`, async () => {
      const imported = await c.ctr(['images', 'import', join(dir, `${kind}.tar`)]);
      assert.equal(imported.code, 0, imported.stderr);
      const ls = await c.ctr(['images', 'ls', '-q']);
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(ls.stdout.trim().split('\n'), [image.name]);
      if (kind === 'oci') {
        // Imported by the same manifest digest the builder reported.
        const full = await c.ctr(['images', 'ls']);
        assert.match(full.stdout, new RegExp(image.manifest.digest));
      }
      const rm = await c.ctr(['images', 'rm', '--sync', image.name]);
      assert.equal(rm.code, 0, rm.stderr);
    });
  }

  test('ctr run --rm IMAGE echo hi prints hi (runc)', async () => {
    const imported = await c.ctr(['images', 'import', join(dir, 'oci.tar')]);
    assert.equal(imported.code, 0, imported.stderr);
    const run = await c.ctr(['run', '--rm', image.name, 'berth-image-builder-echo', '/bin/echo', 'hi'], { timeoutMs: 30_000 });
    assert.equal(run.code, 0, `${run.stderr}\n${c.logs()}`);
    assert.equal(run.stdout, 'hi\n');
    const id = await c.ctr(['run', '--rm', image.name, 'berth-image-builder-id', '/bin/sh', '-c', 'id; ls /tmp'], {
      timeoutMs: 30_000,
    });
    assert.equal(id.code, 0, id.stderr);
    assert.match(id.stdout, /uid=0\(root\) gid=0\(root\)/);
  });

  test('stop ends the daemon and removes its folder', async () => {
    const other = await startContainerd({ namespace: 'berth-image-builder-stop' });
    assert.ok(existsSync(other.address));
    await other.stop();
    assert.equal(existsSync(other.dir), false);
    assert.throws(() => process.kill(other.pid, 0), { code: 'ESRCH' });
  });
});
