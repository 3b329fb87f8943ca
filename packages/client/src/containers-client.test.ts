import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { containerSpec } from './containers-client.js';
import { generateContainerSpec } from './spec/container-spec.js';
import { specToAny } from './spec/runtime-spec.js';
import { engineAvailability, startEngine, type TestEngine } from './test-engines.js';

/*
 * Container records (no tasks, no images: the records only) on containerd
 * and berthd: the same requests must get the same answers from both.
 */

const engines = await engineAvailability(['containers']);
const runc = { name: 'io.containerd.runc.v2', options: { typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array() } };

for (const { name, skip } of engines) {
  describe(`container records on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;

    before(async () => {
      engine = await startEngine(name);
      client = new BerthClient({ address: engine.address, namespace: 'berth-containers-test' });
    });
    after(async () => {
      for (const c of await client?.containers.list().catch(() => []) ?? []) await client.containers.delete(c.id).catch(() => {});
      client?.close();
      await engine?.close();
    });

    it('creates, gets, lists, labels, updates and deletes', async () => {
      const spec = await generateContainerSpec({ namespace: 'berth-containers-test', id: 'rec1', image: { Cmd: ['/bin/true'] } });
      const created = await client.containers.create({
        id: 'rec1',
        labels: { tier: 'gold' },
        image: 'example.com/app:1',
        runtime: runc,
        spec: specToAny(spec),
        extensions: { ext: { typeUrl: 'example.com/Ext', value: Buffer.from([1, 2, 3]) } },
      });
      assert.equal(created.id, 'rec1');
      assert.ok(Math.abs(created.createdAt.getTime() - Date.now()) < 60_000);
      const got = await client.containers.get('rec1');
      assert.deepEqual(containerSpec(got), spec);
      assert.deepEqual(got.labels, { tier: 'gold' });
      assert.equal(got.image, 'example.com/app:1');
      assert.equal(got.runtime.name, runc.name);
      assert.equal(got.runtime.options?.typeUrl, runc.options.typeUrl);
      assert.deepEqual(Buffer.from(got.extensions.ext?.value ?? []), Buffer.from([1, 2, 3]));
      assert.equal(got.snapshotKey, '');

      await client.containers.create({ id: 'rec2', image: 'example.com/other:2', runtime: { name: 'io.containerd.berth.v1' }, spec: specToAny(spec) });
      const ids = async (filters: string[]) => (await client.containers.list(filters)).map((c) => c.id).sort();
      assert.deepEqual(await ids([]), ['rec1', 'rec2']);
      assert.deepEqual(await ids(['id==rec2']), ['rec2']);
      assert.deepEqual(await ids(['labels.tier==gold']), ['rec1']);
      assert.deepEqual(await ids(['image==example.com/other:2']), ['rec2']);
      assert.deepEqual(await ids(['runtime.name==io.containerd.runc.v2']), ['rec1']);

      assert.deepEqual(await client.containers.label('rec1', { zone: 'a' }), { tier: 'gold', zone: 'a' });
      assert.deepEqual(await client.containers.label('rec1', { tier: '' }), { zone: 'a' });
      assert.deepEqual(await client.containers.label('rec1', {}), { zone: 'a' });

      const spec2 = { ...spec, hostname: 'changed' };
      const updated = await client.containers.update({ id: 'rec1', runtime: runc, spec: specToAny(spec2), image: 'example.com/app:2' }, ['spec', 'image']);
      assert.equal(containerSpec(updated).hostname, 'changed');
      assert.equal(updated.image, 'example.com/app:2');
      assert.deepEqual(updated.labels, { zone: 'a' });
      assert.ok(updated.updatedAt.getTime() >= updated.createdAt.getTime());

      await client.containers.delete('rec2');
      await assert.rejects(client.containers.get('rec2'), NotFoundError);
      await assert.rejects(client.containers.delete('rec2'), NotFoundError);
      assert.deepEqual(await ids([]), ['rec1']);
      await client.containers.delete('rec1');
    });

    it('refuses what containerd refuses', async () => {
      const spec = specToAny(await generateContainerSpec({ namespace: 'n', id: 'x' }));
      await client.containers.create({ id: 'dup', runtime: runc, spec });
      await assert.rejects(client.containers.create({ id: 'dup', runtime: runc, spec }), AlreadyExistsError);
      await assert.rejects(client.containers.create({ id: 'nospec', runtime: runc }), InvalidArgumentError);
      await assert.rejects(client.containers.create({ id: 'noruntime', runtime: { name: '' }, spec }), InvalidArgumentError);
      await assert.rejects(client.containers.create({ id: 'bad id!', runtime: runc, spec }), InvalidArgumentError);
      await assert.rejects(client.containers.create({ id: 'nosnap', runtime: runc, spec, snapshotKey: 'k' }), InvalidArgumentError);
      await assert.rejects(client.containers.update({ id: 'absent', runtime: runc, labels: { a: 'b' } }, ['labels.a']), NotFoundError);
      await assert.rejects(client.containers.update({ id: 'dup', runtime: runc }, ['runtime']), InvalidArgumentError);
      await client.containers.delete('dup');
    });
  });
}
