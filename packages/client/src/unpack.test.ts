import { InvalidArgumentError, isNotFound } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { SNAPSHOT_REF_LABEL } from './snapshots-client.js';
import { chainId, resolveImage } from './spec/image-config.js';
import { startTestDaemon, type TestDaemon } from './test-daemon.js';
import { snapshotGcLabel } from './unpack.js';

/*
 * Snapshots, Diff and unpack against an in-process berthd. The image is the
 * image builder's `small` preset, imported with `--no-unpack` semantics
 * (importArchive does not unpack) and unpacked by the client.
 */

const NS = `berth-unpack-test-${process.pid}`;

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

describe('snapshots, diff and unpack on berthd', { ...(skip ? { skip } : {}) }, () => {
  let d: TestDaemon;
  let client: BerthClient;
  let name = '';

  before(async () => {
    d = await startTestDaemon();
    client = new BerthClient({ address: d.address, namespace: NS });
    const imported = await client.images.importArchive((image as { archive: string }).archive);
    name = imported.find((i) => i.name === (image as { name: string }).name)?.name ?? imported[0]?.name ?? '';
  });
  after(async () => {
    client?.close();
    await d?.close();
  });

  it('snapshots: prepare, commit, stat, label, list, usage, view, remove', async () => {
    const s = client.snapshots;
    assert.equal(s.snapshotter, 'overlayfs');
    // GC roots throughout: nothing else refers to these snapshots, and the collection that
    // follows the import in before() may run at any moment.
    const mounts = await s.prepare('t-active', '', { a: '1', 'containerd.io/gc.root': 'yes' });
    assert.ok(mounts.length > 0);
    assert.deepEqual(await s.mounts('t-active'), mounts);
    await s.commit('t-base', 't-active', { b: '2', 'containerd.io/gc.root': 'yes' });
    const info = await s.stat('t-base');
    assert.equal(info.kind, 'committed');
    assert.equal(info.labels.b, '2');
    await assert.rejects(s.commit('t-base', 'nope'), (e) => isNotFound(e) || (e as { kind?: string }).kind === 'already-exists');
    const labelled = await s.label('t-base', { c: '3', b: '' });
    assert.deepEqual(labelled.labels, { c: '3', 'containerd.io/gc.root': 'yes' });
    await s.view('t-view', 't-base', { 'containerd.io/gc.root': 'yes' });
    const views = await s.list(['kind==view']);
    assert.deepEqual(
      views.map((v) => [v.name, v.parent]),
      [['t-view', 't-base']],
    );
    const usage = await s.usage('t-base');
    assert.ok(usage.inodes >= 0 && usage.size >= 0);
    assert.equal(await s.find('missing'), undefined);
    await assert.rejects(s.prepare('t-orphan', 'no-such-parent'), isNotFound);
    await s.remove('t-view');
    await s.remove('t-base');
    assert.equal(await s.find('t-base'), undefined);
    await s.cleanup();
  });

  it('unpack commits each chain ID, labels the config, and reuses what is there', async () => {
    const res = await client.unpack(name);
    const resolved = await resolveImage(client.content, await client.images.get(name));
    assert.equal(res.chainId, resolved.chainId);
    assert.ok(res.layers.length > 0);
    assert.ok(res.layers.every((l) => l.applied));
    for (const [i, l] of res.layers.entries()) {
      assert.equal(l.chainId, chainId(resolved.diffIds.slice(0, i + 1)));
      const info = await client.snapshots.stat(l.chainId);
      assert.equal(info.kind, 'committed');
      assert.equal(info.labels[SNAPSHOT_REF_LABEL], l.chainId);
      assert.equal(info.parent ?? '', i === 0 ? '' : res.layers[i - 1]?.chainId);
    }
    const config = await client.content.info(resolved.config.digest);
    assert.equal(config.labels[snapshotGcLabel('overlayfs')], resolved.chainId);
    // No extract-* key is left behind, and the lease is gone.
    assert.deepEqual(
      (await client.snapshots.list()).filter((s) => s.name.startsWith('extract-')),
      [],
    );
    const again = await client.unpack(name);
    assert.ok(again.layers.every((l) => !l.applied));
  });

  it('unpack into the native snapshotter too', async () => {
    const res = await client.unpack(name, { snapshotter: 'native' });
    assert.ok(await client.snapshotService('native').find(res.chainId));
  });

  it('refuses a layer whose diff ID does not match the config, leaving no snapshot', async () => {
    const good = await resolveImage(client.content, await client.images.get(name));
    const manifest = JSON.parse((await client.content.readAll(good.manifest.digest)).toString());
    const config = JSON.parse((await client.content.readAll(good.config.digest)).toString());
    const bogus = `sha256:${createHash('sha256').update('not this layer').digest('hex')}`;
    config.rootfs.diff_ids = [bogus, ...config.rootfs.diff_ids.slice(1)];
    await client.withLease(async (leased) => {
      const put = async (doc: unknown, mediaType: string) => {
        const bytes = Buffer.from(JSON.stringify(doc));
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        await leased.content.ingest(`unpack-test-${digest}`, bytes, { expected: digest, total: bytes.length });
        return { mediaType, digest, size: bytes.length };
      };
      const cfg = await put(config, good.config.mediaType);
      manifest.config = cfg;
      const man = await put(manifest, good.manifest.mediaType);
      await leased.images.create({ name: 'bad-diff-id:latest', labels: {}, target: man });
    });
    await assert.rejects(client.unpack('bad-diff-id:latest'), (err) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.match(err.message, /wrong diff id/);
      assert.match(err.message, new RegExp(bogus));
      return true;
    });
    assert.equal(await client.snapshots.find(bogus), undefined);
    assert.deepEqual(
      (await client.snapshots.list()).filter((s) => s.name.startsWith('extract-')),
      [],
    );
  });

  it('diff: apply a layer onto an empty snapshot returns its diff ID; compare makes a layer', async () => {
    const resolved = await resolveImage(client.content, await client.images.get(name));
    const manifest = JSON.parse((await client.content.readAll(resolved.manifest.digest)).toString());
    const layer = manifest.layers[0];
    await client.withLease(async (leased) => {
      const mounts = await leased.snapshots.prepare('diff-apply', '');
      const applied = await leased.diff.apply(layer, mounts);
      assert.equal(applied.digest, resolved.diffIds[0]);
      await leased.snapshots.commit('diff-base', 'diff-apply');
      const lower = await leased.snapshots.view('diff-lower', 'diff-base');
      const upper = await leased.snapshots.prepare('diff-upper', 'diff-base');
      const made = await leased.diff.diff(lower, upper, { mediaType: 'application/vnd.oci.image.layer.v1.tar' });
      assert.match(made.digest, /^sha256:[0-9a-f]{64}$/);
      for (const k of ['diff-upper', 'diff-lower', 'diff-base']) await leased.snapshots.remove(k);
    });
  });
});
