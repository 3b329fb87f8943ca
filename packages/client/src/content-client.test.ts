import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
} from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BerthClient } from './berth-client.js';
import { WRITE_CHUNK_BYTES } from './content-client.js';
import { LeasedClientContext } from './leases-client.js';
import { sha256 } from './oci/test-images.js';
import { engineAvailability, startEngine, type TestEngine } from './test-engines.js';

const engines = await engineAvailability(['content', 'leases']);

async function readAll(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(p);
  return Buffer.concat(parts);
}

for (const { name, skip } of engines) {
  describe(`content on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;

    before(async () => {
      engine = await startEngine(name);
      const base = new BerthClient({ address: engine.address, namespace: 'berth-content-test' });
      // Every blob here is unreferenced: hold them all in a lease, or a collection
      // after any deletion (containerd's and berthd's GC alike) could take one mid-test.
      const lease = await base.leases.create({ id: 'content-suite' });
      client = new BerthClient(new LeasedClientContext(base.context, lease.id));
    });
    after(async () => {
      client?.close();
      await engine?.close();
    });

    it('ingests, reads back whole and in ranges, lists, filters and deletes', async () => {
      const data = Buffer.from('the quick brown fox jumps over the lazy dog\n');
      const digest = sha256(data);
      const info = await client.content.ingest('rt-1', data, { expected: digest, total: data.length, labels: { 'x.y/z': '1' } });
      assert.equal(info.digest, digest);
      assert.equal(info.size, data.length);
      assert.deepEqual(info.labels, { 'x.y/z': '1' });
      assert.ok(info.createdAt.getTime() > Date.now() - 60_000);

      assert.deepEqual(await readAll(client.content.read(digest)), data);
      assert.equal((await readAll(client.content.read(digest, { offset: 4, size: 5 }))).toString(), 'quick');
      assert.equal((await readAll(client.content.read(digest, { offset: 40 }))).toString(), 'dog\n');
      assert.deepEqual(await client.content.readAll(digest, { maxBytes: 100 }), data);
      await assert.rejects(client.content.readAll(digest, { maxBytes: 10 }), InvalidArgumentError);

      const listed = await client.content.list();
      assert.ok(listed.some((i) => i.digest === digest && i.size === data.length));
      assert.deepEqual(
        (await client.content.list([`digest==${digest}`])).map((i) => i.digest),
        [digest],
      );
      assert.deepEqual(
        (await client.content.list(['labels."x.y/z"==1'])).map((i) => i.digest),
        [digest],
      );
      assert.deepEqual(await client.content.list(['labels."x.y/z"==2']), []);

      await client.content.delete(digest);
      await assert.rejects(client.content.info(digest), NotFoundError);
      await assert.rejects(readAll(client.content.read(digest)), NotFoundError);
      await assert.rejects(client.content.delete(digest), NotFoundError);
    });

    it('updates labels by path, and replaces them all without paths', async () => {
      const info = await client.content.ingest('labels-1', Buffer.from('labels'), { labels: { a: '1', b: '2' } });
      const d = info.digest;
      assert.deepEqual((await client.content.update(d, { c: '3' }, ['labels.c'])).labels, { a: '1', b: '2', c: '3' });
      // An empty value, or a key absent from the labels, removes it.
      assert.deepEqual((await client.content.update(d, { a: '' }, ['labels.a', 'labels.b'])).labels, { c: '3' });
      assert.deepEqual((await client.content.update(d, { z: '9' }, ['labels'])).labels, { z: '9' });
      assert.deepEqual((await client.content.update(d, { y: '8' })).labels, { y: '8' });
      assert.deepEqual((await client.content.info(d)).labels, { y: '8' });
      await assert.rejects(client.content.update(sha256('absent'), { a: '1' }, ['labels.a']), NotFoundError);
      await client.content.delete(d);
    });

    it('streams a multi-MiB Readable in 1 MiB writes', async () => {
      const data = randomBytes(WRITE_CHUNK_BYTES * 2 + 12345);
      const source = Readable.from([data.subarray(0, 100), data.subarray(100, 3_000_000), data.subarray(3_000_000)]);
      const info = await client.content.ingest('big-1', source, { expected: sha256(data), total: data.length });
      assert.equal(info.size, data.length);
      assert.deepEqual(await readAll(client.content.read(info.digest)), data);
      await client.content.delete(info.digest);
    });

    it('resumes an interrupted ingest from the offset the daemon reports', async () => {
      const data = randomBytes(WRITE_CHUNK_BYTES + 5000);
      const digest = sha256(data);
      const w = await client.content.openWriter('resume-1', { total: data.length });
      assert.equal(w.offset, 0);
      await w.write(data.subarray(0, 70_000));
      w.abandon(); // as if the process died mid-copy
      let status = await eventually(() => client.content.status('resume-1'), (s) => s.offset === 70_000);
      assert.equal(status.ref, 'resume-1');
      assert.equal(status.total, data.length);
      assert.ok((await client.content.listStatuses()).some((s) => s.ref === 'resume-1'));

      // The source's first 70 000 bytes are skipped, not sent: garbage there proves it.
      const source = Buffer.concat([Buffer.alloc(70_000, 0x55), data.subarray(70_000)]);
      const info = await client.content.ingest('resume-1', source, { total: data.length });
      assert.equal(info.digest, digest);
      assert.deepEqual(await readAll(client.content.read(digest)), data);
      await assert.rejects(client.content.status('resume-1'), NotFoundError);

      // With resume off, a stale ingest is started over.
      const w2 = await client.content.openWriter('resume-2');
      await w2.write(Buffer.from('stale bytes'));
      await w2.close();
      status = await client.content.status('resume-2');
      assert.equal(status.offset, 11);
      const fresh = await client.content.ingest('resume-2', Buffer.from('fresh'), { resume: false });
      assert.equal(fresh.digest, sha256('fresh'));
      await client.content.delete(digest);
      await client.content.delete(fresh.digest);
    });

    it('ingests a file by path or descriptor, resuming an interrupted ingest (berthd: by descriptor)', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'berth-ingest-file-'));
      try {
        const data = randomBytes(3 * WRITE_CHUNK_BYTES + 777);
        const digest = sha256(data);
        const file = join(dir, 'blob');
        await writeFile(file, data);
        const info = await client.content.ingestFile('file-1', file, { expected: digest, labels: { from: 'file' } });
        assert.deepEqual([info.digest, info.size, info.labels.from], [digest, data.length, 'file']);
        assert.deepEqual(await readAll(client.content.read(digest)), data);
        // Again, by descriptor: already here, the labels asked for are set.
        const fh = await open(file, 'r');
        try {
          const again = await client.content.ingestFile('file-2', fh.fd, { expected: digest, labels: { again: 'yes' } });
          assert.deepEqual([again.labels.from, again.labels.again], ['file', 'yes']);
        } finally {
          await fh.close();
        }
        await client.content.delete(digest);

        // Interrupted after 70 000 bytes: the file's first 70 000 bytes are not read again (garbage there proves it).
        const w = await client.content.openWriter('file-3', { total: data.length });
        await w.write(data.subarray(0, 70_000));
        w.abandon();
        await eventually(() => client.content.status('file-3'), (st) => st.offset === 70_000);
        await writeFile(file, Buffer.concat([Buffer.alloc(70_000, 0x55), data.subarray(70_000)]));
        assert.equal((await client.content.ingestFile('file-3', file)).digest, digest);
        await assert.rejects(client.content.status('file-3'), NotFoundError);
        await client.content.delete(digest);

        // A wrong expected digest is refused and no blob appears.
        await assert.rejects(client.content.ingestFile('file-4', file, { expected: sha256('other') }), FailedPreconditionError);
        await assert.rejects(client.content.info(digest), NotFoundError);
        await client.content.abort('file-4');

        if (name === 'berthd') {
          // berthd reads the descriptor itself, and takes regular files only (a stream would have read the FIFO).
          const fifo = join(dir, 'fifo');
          execFileSync('mkfifo', [fifo]);
          const fd = openSync(fifo, constants.O_RDWR);
          try {
            await assert.rejects(client.content.ingestFile('file-5', fd, { total: 1 }), /not a regular file/);
          } finally {
            closeSync(fd);
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('waits for a ref another writer holds, then resumes after it', async () => {
      const data = Buffer.from('first half|second half');
      const a = await client.content.openWriter('locked-1');
      await a.write(data.subarray(0, 11));
      await assert.rejects(client.content.openWriter('locked-1', { lockWaitMs: 0 }), /locked/);
      const b = client.content.ingest('locked-1', data, { expected: sha256(data) });
      await new Promise((r) => setTimeout(r, 100));
      await a.close();
      assert.equal((await b).digest, sha256(data));
    });

    it('aborts an ingest', async () => {
      const w = await client.content.openWriter('abort-1');
      await w.write(Buffer.from('partial'));
      await w.close();
      assert.equal((await client.content.status('abort-1')).offset, 7);
      await client.content.abort('abort-1');
      await assert.rejects(client.content.status('abort-1'), NotFoundError);
      await assert.rejects(client.content.abort('abort-1'), NotFoundError);
    });

    it('treats AlreadyExists as "already have it"', async () => {
      const data = Buffer.from('exists once');
      const digest = sha256(data);
      const first = await client.content.ingest('dup-1', data, { expected: digest });
      // With the digest: the daemon says so on STAT and nothing is sent.
      await assert.rejects(client.content.openWriter('dup-2', { expected: digest }), AlreadyExistsError);
      let read = false;
      const untouched = (async function* () {
        read = true;
        yield data;
      })();
      const again = await client.content.ingest('dup-2', untouched, { expected: digest, labels: { k: 'v' } });
      assert.equal(read, false);
      assert.equal(again.digest, digest);
      assert.equal(again.createdAt.getTime(), first.createdAt.getTime());
      assert.deepEqual(again.labels, { k: 'v' });
      // Without it: the commit says AlreadyExists.
      const third = await client.content.ingest('dup-3', data);
      assert.equal(third.digest, digest);
      assert.deepEqual(await client.content.listStatuses(['ref==dup-3']), []);
      await client.content.delete(digest);
    });

    it('refuses a commit whose size or digest does not match', async () => {
      const data = Buffer.from('mismatch');
      await assert.rejects(client.content.ingest('bad-1', data, { expected: sha256('other') }), FailedPreconditionError);
      await assert.rejects(client.content.ingest('bad-2', data, { total: 3 }), InvalidArgumentError);
      // The daemon's own checks, through the raw writer.
      const w = await client.content.openWriter('bad-3');
      await w.write(data);
      await assert.rejects(w.commit(data.length, sha256('other')), FailedPreconditionError);
      const w2 = await client.content.openWriter('bad-4');
      await w2.write(data);
      await assert.rejects(w2.commit(data.length + 1), FailedPreconditionError);
      for (const ref of ['bad-1', 'bad-3', 'bad-4']) await client.content.abort(ref).catch(() => {});
      await assert.rejects(client.content.info(sha256(data)), NotFoundError);
    });

    it('rejects reads of unknown or malformed digests', async () => {
      await assert.rejects(client.content.info(sha256('never')), NotFoundError);
      await assert.rejects(client.content.info('sha256:nothex'), InvalidArgumentError);
      await assert.rejects(readAll(client.content.read('not-a-digest')), InvalidArgumentError);
    });

    it('keeps content written under a lease until the lease goes', async () => {
      const lease = await client.leases.create({ id: 'content-lease-1' });
      const data = Buffer.from('leased blob');
      const digest = sha256(data);
      await client.content.ingest('leased-1', data, { expected: digest, lease: lease.id });
      const resources = await client.leases.listResources(lease.id);
      assert.ok(
        resources.some((r) => r.type === 'content' && r.id === digest),
        JSON.stringify(resources),
      );
      await client.leases.delete(lease.id, { sync: true });
      await assert.rejects(client.content.info(digest), NotFoundError);
    });
  });
}

/** Poll until `ok` holds (a cancelled stream reaches the daemon a little later). */
async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < 100; i++) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`condition not reached; last: ${JSON.stringify(last)}`);
}
