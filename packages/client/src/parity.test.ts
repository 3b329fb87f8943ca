import { bidiStream } from '@berth/api';
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, NotImplementedError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { LeasedClientContext } from './leases-client.js';
import { sha256 } from './oci/test-images.js';
import { engineAvailability, startEngine, type TestEngine } from './test-engines.js';

/*
 * Wire behaviour where berthd and containerd 1.6 were once seen to differ.
 * Each test states containerd's answer and runs on both engines.
 */

const engines = await engineAvailability(['content', 'images', 'leases']);

interface WriteMsg {
  action: number;
  ref?: string;
  offset?: number;
  total?: number;
  expected?: string;
  data?: Uint8Array;
  labels?: Record<string, string>;
}

/** Send `msgs` one at a time on Content.Write; the answers, then 'OK' or the error. */
interface WriteAnswer {
  offset?: number;
  digest?: string;
}

async function write(client: BerthClient, msgs: WriteMsg[]): Promise<(WriteAnswer | string | Error)[]> {
  const s = bidiStream<WriteMsg, WriteAnswer>(client.context.connection, 'containerd.services.content.v1.Content', 'Write', client.context.stream());
  const it = s.responses[Symbol.asyncIterator]();
  const out: (WriteAnswer | string | Error)[] = [];
  try {
    for (const m of msgs) {
      s.write(m).catch(() => {});
      const r = await it.next();
      if (r.done) break;
      out.push(r.value);
    }
    s.end();
    for (let r = await it.next(); !r.done; r = await it.next());
    out.push('OK');
  } catch (err) {
    out.push(err as Error);
  }
  return out;
}

for (const { name, skip } of engines) {
  describe(`containerd parity on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;

    before(async () => {
      engine = await startEngine(name);
      const base = new BerthClient({ address: engine.address, namespace: 'parity' });
      await base.leases.create({ id: 'parity' });
      client = new BerthClient(new LeasedClientContext(base.context, 'parity'));
    });
    after(async () => {
      client?.close();
      await engine?.close();
    });

    it('drops labels with empty values on commit and on lease create', async () => {
      const info = await client.content.ingest('empty-labels', Buffer.from('empty labels'), { labels: { kept: '1', dropped: '' } });
      assert.deepEqual(info.labels, { kept: '1' });
      const lease = await client.leases.create({ id: 'empty-labels', labels: { kept: '1', dropped: '' } });
      assert.deepEqual(lease.labels, { kept: '1' });
      await client.leases.delete('empty-labels');
    });

    it('answers each WRITE with the digest of the bytes so far', async () => {
      const r = await write(client, [
        { action: 0, ref: 'digest-1' },
        { action: 1, ref: 'digest-1', offset: 0, data: Buffer.from('abc') },
      ]);
      assert.equal((r[1] as WriteAnswer).digest, sha256('abc'));
      await client.content.abort('digest-1');
    });

    it('answers a WRITE at the wrong offset with OutOfRange', async () => {
      const r = await write(client, [
        { action: 0, ref: 'offset-1' },
        { action: 1, ref: 'offset-1', offset: 7, data: Buffer.from('x') },
      ]);
      const err = r.at(-1) as Error;
      assert.equal(err.name, 'OutOfRangeError', err.message);
      await client.content.abort('offset-1').catch(() => {});
    });

    it('answers AlreadyExists when a WRITE names an expected digest it has', async () => {
      await client.content.ingest('have-1', Buffer.from('have'));
      const r = await write(client, [
        { action: 0, ref: 'have-2' },
        { action: 1, ref: 'have-2', offset: 0, data: Buffer.from('h'), expected: sha256('have') },
      ]);
      assert.ok(r.at(-1) instanceof AlreadyExistsError, String(r.at(-1)));
    });

    it('refuses an image whose target has no size', async () => {
      await assert.rejects(
        client.images.create({ name: 'no-size', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256('m'), size: 0 } }),
        InvalidArgumentError,
      );
    });

    it('answers an unknown lease resource type with Unimplemented', async () => {
      await assert.rejects(client.leases.addResource('parity', { id: 'x', type: 'wat' }), NotImplementedError);
    });

    it('opens a complete ingest for a blob another namespace holds, shared on commit', async () => {
      const data = Buffer.from('shared between namespaces');
      await client.content.ingest('shared-1', data);
      const other = client.withNamespace('parity-other');
      const r = await write(other, [{ action: 0, ref: 'shared-2', expected: sha256(data), total: data.length }]);
      assert.equal((r[0] as WriteAnswer).offset, data.length, String(r[0]));
      await assert.rejects(other.content.info(sha256(data)), NotFoundError);
      // Our ingest copes with both answers.
      assert.equal((await other.content.ingest('shared-3', data, { expected: sha256(data) })).size, data.length);
    });

    it('takes the lease ids ctr generates (`<nanos>-<base64url>`)', async () => {
      // ctr's leases.WithRandomID: base64url may put - or _ anywhere, doubled or at the end.
      for (const id of ['267566458--2yY', '1234-ab_-', '99-_xyz']) {
        const lease = await client.leases.create({ id });
        assert.equal(lease.id, id);
        await client.leases.delete(id);
      }
    });

    it('reads from 0 when asked for a negative offset', async () => {
      const info = await client.content.ingest('neg-1', Buffer.from('negative'));
      const parts: Buffer[] = [];
      for await (const p of client.content.read(info.digest, { offset: -5 })) parts.push(p);
      assert.equal(Buffer.concat(parts).toString(), 'negative');
    });
  });
}
