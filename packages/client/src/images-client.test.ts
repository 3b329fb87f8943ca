import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { MediaType } from './oci/media-types.js';
import { sha256 } from './oci/test-images.js';
import { engineAvailability, startEngine, type TestEngine } from './test-engines.js';

const engines = await engineAvailability(['content', 'images', 'leases']);

const target = (s: string, mediaType: string = MediaType.ociManifest) => ({ mediaType, digest: sha256(s), size: s.length });

for (const { name, skip } of engines) {
  describe(`images on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;

    before(async () => {
      engine = await startEngine(name);
      client = new BerthClient({ address: engine.address, namespace: 'berth-images-test' });
    });
    after(async () => {
      client?.close();
      await engine?.close();
    });

    it('creates, gets, lists, updates and deletes', async () => {
      const created = await client.images.create({ name: 'example.com/a:1', target: target('a'), labels: { k: 'v' } });
      assert.equal(created.name, 'example.com/a:1');
      assert.deepEqual(created.target, target('a'));
      assert.deepEqual(created.labels, { k: 'v' });
      assert.ok(Math.abs(created.createdAt.getTime() - Date.now()) < 60_000);

      const got = await client.images.get('example.com/a:1');
      assert.deepEqual(got.target, target('a'));
      assert.deepEqual(got.labels, { k: 'v' });
      await assert.rejects(client.images.create({ name: 'example.com/a:1', target: target('a') }), AlreadyExistsError);
      await assert.rejects(client.images.get('example.com/none:1'), NotFoundError);

      const withAnnotations = { ...target('b', MediaType.ociIndex), annotations: { 'org.opencontainers.image.ref.name': '2' } };
      await client.images.create({ name: 'example.com/b:2', target: withAnnotations });
      assert.deepEqual((await client.images.get('example.com/b:2')).target, withAnnotations);

      // Label paths, then the target alone.
      let updated = await client.images.update({ name: 'example.com/a:1', target: target('ignored'), labels: { j: 'w' } }, ['labels.j']);
      assert.deepEqual(updated.labels, { k: 'v', j: 'w' });
      assert.deepEqual(updated.target, target('a'));
      updated = await client.images.update({ name: 'example.com/a:1', target: target('a2') }, ['target']);
      assert.deepEqual(updated.target, target('a2'));
      assert.deepEqual(updated.labels, { k: 'v', j: 'w' });
      updated = await client.images.update({ name: 'example.com/a:1', target: target('a2'), labels: {} }, ['labels']);
      assert.deepEqual(updated.labels, {});
      await assert.rejects(client.images.update({ name: 'example.com/none:1', target: target('x') }, ['target']), NotFoundError);

      // put: update the target, or create.
      assert.deepEqual((await client.images.put({ name: 'example.com/a:1', target: target('a3') })).target, target('a3'));
      assert.deepEqual((await client.images.put({ name: 'example.com/c:3', target: target('c') })).target, target('c'));

      await client.images.delete('example.com/c:3');
      await client.images.delete('example.com/b:2', { sync: true });
      await client.images.delete('example.com/a:1');
      await assert.rejects(client.images.delete('example.com/a:1'), NotFoundError);
      assert.deepEqual(await client.images.list(), []);
    });

    it('filters the list as containerd does', async () => {
      await client.images.create({ name: 'docker.io/library/f1:latest', target: target('f1'), labels: { tier: 'gold' } });
      await client.images.create({ name: 'docker.io/library/f2:latest', target: target('f2', MediaType.dockerManifest) });
      await client.images.create({ name: 'quay.io/x/f3:1', target: target('f3', MediaType.ociIndex), labels: { tier: 'tin' } });
      const names = async (filters: string[]) => (await client.images.list(filters)).map((i) => i.name).sort();
      assert.deepEqual(await names([]), ['docker.io/library/f1:latest', 'docker.io/library/f2:latest', 'quay.io/x/f3:1']);
      assert.deepEqual(await names(['name==quay.io/x/f3:1']), ['quay.io/x/f3:1']);
      assert.deepEqual(await names(['name~=^docker.io/']), ['docker.io/library/f1:latest', 'docker.io/library/f2:latest']);
      assert.deepEqual(await names(['labels.tier==gold']), ['docker.io/library/f1:latest']);
      assert.deepEqual(await names(['labels.tier']), ['docker.io/library/f1:latest', 'quay.io/x/f3:1']);
      assert.deepEqual(await names([`target.digest==${sha256('f2')}`]), ['docker.io/library/f2:latest']);
      assert.deepEqual(await names([`target.mediatype==${MediaType.ociIndex}`]), ['quay.io/x/f3:1']);
      // Several filters: any may match.
      assert.deepEqual(await names(['labels.tier==gold', 'name==quay.io/x/f3:1']), ['docker.io/library/f1:latest', 'quay.io/x/f3:1']);
      // Within one filter, comma means all.
      assert.deepEqual(await names(['labels.tier,name~=quay']), ['quay.io/x/f3:1']);
      await assert.rejects(client.images.list(['name==']), InvalidArgumentError);
      for (const n of await names([])) await client.images.delete(n);
    });

    it('refuses invalid names and targets', async () => {
      await assert.rejects(client.images.create({ name: '', target: target('x') }), InvalidArgumentError);
      await assert.rejects(client.images.create({ name: 'x', target: { mediaType: '', digest: sha256('x'), size: 1 } }), InvalidArgumentError);
      await assert.rejects(client.images.create({ name: 'x', target: { mediaType: MediaType.ociManifest, digest: 'nope', size: 1 } }), InvalidArgumentError);
    });
  });
}
