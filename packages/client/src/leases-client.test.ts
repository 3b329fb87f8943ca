import { AlreadyExistsError, GcLabel, NotFoundError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { randomLeaseId, rfc3339 } from './leases-client.js';
import { sha256 } from './oci/test-images.js';
import { engineAvailability, startEngine, type TestEngine } from './test-engines.js';

const engines = await engineAvailability(['content', 'leases']);

describe('lease helpers', () => {
  it('formats gc.expire as RFC 3339 in UTC, whole seconds', () => {
    assert.equal(rfc3339(new Date(Date.UTC(2024, 4, 1, 10, 2, 3, 456))), '2024-05-01T10:02:03Z');
  });
  it('makes ids that are valid containerd identifiers', () => {
    for (let i = 0; i < 50; i++) assert.match(randomLeaseId(), /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/);
  });
});

for (const { name, skip } of engines) {
  describe(`leases on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;

    before(async () => {
      engine = await startEngine(name);
      client = new BerthClient({ address: engine.address, namespace: 'berth-leases-test' });
    });
    after(async () => {
      client?.close();
      await engine?.close();
    });

    it('creates, lists, filters and deletes leases', async () => {
      const before = Date.now();
      const lease = await client.leases.create({ id: 'lease-a', labels: { team: 'x' }, expireAfterMs: 3_600_000 });
      assert.equal(lease.id, 'lease-a');
      assert.equal(lease.labels.team, 'x');
      const expire = Date.parse(lease.labels[GcLabel.expire] ?? '');
      assert.ok(Math.abs(expire - (before + 3_600_000)) < 5_000, lease.labels[GcLabel.expire]);
      assert.ok(Math.abs(lease.createdAt.getTime() - before) < 60_000);

      const generated = await client.leases.create();
      assert.match(generated.id, /^\d+-[0-9a-f]+$/);
      assert.deepEqual(generated.labels, {});

      const ids = (await client.leases.list()).map((l) => l.id).sort();
      assert.deepEqual(ids, [generated.id, 'lease-a'].sort());
      assert.deepEqual(
        (await client.leases.list(['id==lease-a'])).map((l) => l.id),
        ['lease-a'],
      );
      assert.deepEqual(
        (await client.leases.list(['labels.team==x'])).map((l) => l.id),
        ['lease-a'],
      );

      await assert.rejects(client.leases.create({ id: 'lease-a' }), AlreadyExistsError);
      await client.leases.delete('lease-a');
      await client.leases.delete(generated.id, { sync: true });
      assert.deepEqual(await client.leases.list(), []);
      await assert.rejects(client.leases.delete('lease-a'), NotFoundError);
    });

    it('adds, lists and removes resources', async () => {
      await client.leases.create({ id: 'lease-res' });
      const digest = sha256('resource');
      await client.leases.addResource('lease-res', { id: digest, type: 'content' });
      await client.leases.addResource('lease-res', { id: 'ingest-ref', type: 'ingests' });
      const listed = await client.leases.listResources('lease-res');
      assert.deepEqual(
        listed.map((r) => `${r.type}:${r.id}`).sort(),
        [`content:${digest}`, 'ingests:ingest-ref'],
      );
      await client.leases.deleteResource('lease-res', { id: digest, type: 'content' });
      assert.deepEqual(await client.leases.listResources('lease-res'), [{ id: 'ingest-ref', type: 'ingests' }]);
      await assert.rejects(client.leases.addResource('no-such-lease', { id: digest, type: 'content' }), NotFoundError);
      await client.leases.delete('lease-res');
    });

    it('withLease holds what fn writes, then lets GC take it', async () => {
      const data = Buffer.from('held by withLease');
      const digest = sha256(data);
      const seen = await client.withLease(
        async (leased, id) => {
          assert.equal(leased.lease, id);
          assert.equal(leased.namespace, client.namespace);
          const info = await leased.content.ingest('with-lease-1', data, { expected: digest });
          const lease = (await client.leases.list([`id==${id}`]))[0];
          assert.ok(lease, 'lease listed while fn runs');
          assert.ok(lease.labels[GcLabel.expire], 'withLease sets an expiry');
          assert.ok((await client.leases.listResources(id)).some((r) => r.id === digest));
          // Nested: the same lease.
          await leased.withLease(async (_inner, innerId) => assert.equal(innerId, id));
          return info.digest;
        },
        { sync: true },
      );
      assert.equal(seen, digest);
      assert.equal(client.lease, undefined);
      assert.deepEqual(await client.leases.list(), []);
      await assert.rejects(client.content.info(digest), NotFoundError);
    });

    it('deletes the lease when fn fails', async () => {
      await assert.rejects(
        client.withLease(async () => {
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.deepEqual(await client.leases.list(), []);
    });
  });
}
