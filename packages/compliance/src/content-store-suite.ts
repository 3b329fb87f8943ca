import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type ContentStore, type ContentWriter, type ErrorKind, errorKindOf } from '@berth/plugin-api';

export interface ContentStoreFixture {
  readonly store: ContentStore;
  cleanup(): Promise<void>;
}

export type ContentStoreFactory = () => Promise<ContentStoreFixture>;

/**
 * The behaviour every ContentStore must show (after containerd's
 * core/content/testsuite). Registers node:test cases under `describe(name)`;
 * each case gets a fresh store from `factory` and cleans it up afterwards.
 *
 * Beyond the interface's comments, the suite fixes these points:
 * - a commit ends its writer whatever the outcome, so the ref is free again;
 * - `read` yields chunks of at most 4 MiB (the gRPC layer sends them as is);
 * - `read` clamps `size` to the end of the blob, and refuses an `offset` past
 *   the end with InvalidArgument.
 */
export function contentStoreSuite(name: string, factory: ContentStoreFactory): void {
  const it = (title: string, fn: (store: ContentStore) => Promise<void>) =>
    test(title, async () => {
      const fixture = await factory();
      try {
        await fn(fixture.store);
      } finally {
        await fixture.cleanup();
      }
    });

  describe(`ContentStore compliance: ${name}`, () => {
    it('writes, commits, describes and reads back a blob', async (store) => {
      const data = bytes(100_000, 1);
      const expected = sha256(data);
      const w = await store.writer({ ref: 'round-trip', total: data.length, expected });
      assert.equal(w.ref, 'round-trip');
      assert.equal(w.offset, 0);
      assert.equal(w.digest(), sha256(new Uint8Array()));
      await w.write(data.subarray(0, 1000));
      await w.write(data.subarray(1000, 60_000));
      await w.write(data.subarray(60_000));
      assert.equal(w.offset, data.length);
      assert.equal(w.digest(), expected);
      const ws = await w.status();
      assert.equal(ws.ref, 'round-trip');
      assert.equal(ws.offset, data.length);
      assert.equal(ws.total, data.length);
      assert.equal(ws.expected, expected);
      const st = await store.status('round-trip');
      assert.equal(st.offset, data.length);

      const before = Date.now();
      assert.equal(await w.commit(data.length, expected), expected);
      const info = await store.info(expected);
      assert.equal(info.digest, expected);
      assert.equal(info.size, data.length);
      assert.deepEqual(info.labels, {});
      assert.ok(info.createdAt instanceof Date && info.updatedAt instanceof Date);
      assert.ok(Math.abs(info.createdAt.getTime() - before) < 60_000, 'createdAt is about now');
      assert.deepEqual(await collect(store.read(expected)), data);
      await rejectsWith(store.status('round-trip'), 'not-found');
      assert.deepEqual(await store.listStatuses(), []);
    });

    it('commits without an expected digest and returns the sha256 of the data', async (store) => {
      const data = bytes(4096, 2);
      const w = await store.writer({ ref: 'no-expected' });
      await w.write(data);
      assert.equal(await w.commit(0), sha256(data));
      assert.equal((await store.info(sha256(data))).size, data.length);
    });

    it('commits an empty blob', async (store) => {
      const w = await store.writer({ ref: 'empty' });
      const empty = sha256(new Uint8Array());
      assert.equal(await w.commit(0, empty), empty);
      assert.equal((await store.info(empty)).size, 0);
      assert.deepEqual(await collect(store.read(empty)), new Uint8Array());
    });

    it('reads from an offset, at most size bytes', async (store) => {
      const data = bytes(10_000, 3);
      const dgst = await put(store, data);
      assert.deepEqual(await collect(store.read(dgst, 100)), data.subarray(100));
      assert.deepEqual(await collect(store.read(dgst, 100, 50)), data.subarray(100, 150));
      assert.deepEqual(await collect(store.read(dgst, 0, 0)), data);
      assert.deepEqual(await collect(store.read(dgst, 9_990, 100)), data.subarray(9_990), 'size is clamped to the end');
      assert.deepEqual(await collect(store.read(dgst, data.length)), new Uint8Array(), 'offset at the end: nothing');
      await rejectsWith(collect(store.read(dgst, data.length + 1)), 'out-of-range');
      await rejectsWith(collect(store.read(dgst, -1)), 'invalid-argument');
    });

    it('lets a reader stop early', async (store) => {
      const dgst = await put(store, bytes(3 << 20, 4));
      for await (const chunk of store.read(dgst)) {
        assert.ok(chunk.length > 0);
        break;
      }
      assert.equal((await store.info(dgst)).size, 3 << 20);
    });

    it('resumes an ingest after its writer closed, with the right digest', async (store) => {
      const data = bytes(50_000, 5);
      const expected = sha256(data);
      const w1 = await store.writer({ ref: 'resume', total: data.length, expected });
      await w1.write(data.subarray(0, 20_000));
      await w1.close();
      await w1.close(); // closing twice is harmless

      const st = await store.status('resume');
      assert.equal(st.offset, 20_000);
      assert.equal(st.total, data.length);
      assert.equal(st.expected, expected);

      const w2 = await store.writer({ ref: 'resume', total: data.length, expected });
      assert.equal(w2.offset, 20_000);
      assert.equal(w2.digest(), sha256(data.subarray(0, 20_000)));
      await w2.write(data.subarray(20_000));
      assert.equal(await w2.commit(data.length, expected), expected);
      assert.deepEqual(await collect(store.read(expected)), data);
    });

    it('resumes with no total or expected given, keeping the recorded ones', async (store) => {
      const data = bytes(3000, 6);
      const w1 = await store.writer({ ref: 'resume-bare', total: data.length, expected: sha256(data) });
      await w1.write(data.subarray(0, 1000));
      await w1.close();
      const w2 = await store.writer({ ref: 'resume-bare' });
      const st = await w2.status();
      assert.equal(st.offset, 1000);
      assert.equal(st.total, data.length);
      assert.equal(st.expected, sha256(data));
      await w2.write(data.subarray(1000));
      assert.equal(await w2.commit(0), sha256(data));
    });

    it('refuses a commit of the wrong size, keeping the ingest to resume', async (store) => {
      const data = bytes(10, 7);
      const w = await store.writer({ ref: 'wrong-size' });
      await w.write(data);
      await rejectsWith(w.commit(12, sha256(data)), 'failed-precondition', /unexpected commit size 10, expected 12/);
      assert.equal((await store.status('wrong-size')).offset, 10);
      await rejectsWith(store.info(sha256(data)), 'not-found');

      const w2 = await store.writer({ ref: 'wrong-size' });
      assert.equal(w2.offset, 10);
      await w2.write(data.subarray(0, 2));
      const all = concat(data, data.subarray(0, 2));
      assert.equal(await w2.commit(12, sha256(all)), sha256(all));
    });

    it('refuses a commit with the wrong digest, keeping the ingest to abort', async (store) => {
      const data = bytes(1000, 8);
      const other = sha256(bytes(1000, 9));
      const w = await store.writer({ ref: 'wrong-digest' });
      await w.write(data);
      await rejectsWith(
        w.commit(data.length, other),
        'failed-precondition',
        new RegExp(`unexpected commit digest ${sha256(data)}, expected ${other}`),
      );
      await rejectsWith(store.info(other), 'not-found');
      await rejectsWith(store.info(sha256(data)), 'not-found');
      assert.equal((await store.status('wrong-digest')).offset, data.length);

      const w2 = await store.writer({ ref: 'wrong-digest' });
      assert.equal(w2.offset, data.length);
      assert.equal(w2.digest(), sha256(data));
      await w2.close();
      await store.abort('wrong-digest');
      await rejectsWith(store.status('wrong-digest'), 'not-found');
      assert.deepEqual(await store.listStatuses(), []);
    });

    it('locks a ref to one writer at a time', async (store) => {
      const w = await store.writer({ ref: 'held' });
      await rejectsWith(store.writer({ ref: 'held' }), 'unavailable', /ref held locked/);
      await rejectsWith(store.abort('held'), 'unavailable');
      await w.write(bytes(10, 10));
      await w.close();
      const w2 = await store.writer({ ref: 'held' });
      assert.equal(w2.offset, 10);
      await w2.commit(10);
      const w3 = await store.writer({ ref: 'held' });
      assert.equal(w3.offset, 0, 'a committed ref starts afresh');
      await w3.close();
    });

    it('refuses content that already exists', async (store) => {
      const data = bytes(500, 11);
      const dgst = await put(store, data);
      await rejectsWith(store.writer({ ref: 'again', expected: dgst }), 'already-exists', new RegExp(`content ${dgst}`));
      await rejectsWith(store.status('again'), 'not-found');

      const w = await store.writer({ ref: 'again-unannounced' });
      await w.write(data);
      await rejectsWith(w.commit(data.length, dgst), 'already-exists');
      await rejectsWith(store.status('again-unannounced'), 'not-found', undefined, 'the ingest is removed');
      assert.deepEqual(await collect(store.read(dgst)), data);
    });

    it('reports, lists and aborts ingests', async (store) => {
      const a = await store.writer({ ref: 'ingest-a', total: 100, expected: sha256(bytes(100, 12)) });
      await a.write(bytes(40, 12));
      const b = await store.writer({ ref: 'ingest-b' });
      await b.write(bytes(7, 13));
      await b.close();

      const sa = await store.status('ingest-a');
      assert.equal(sa.ref, 'ingest-a');
      assert.equal(sa.offset, 40);
      assert.equal(sa.total, 100);
      assert.equal(sa.expected, sha256(bytes(100, 12)));
      assert.ok(sa.startedAt instanceof Date && sa.updatedAt >= sa.startedAt);
      const sb = await store.status('ingest-b');
      assert.deepEqual([sb.offset, sb.total, sb.expected], [7, 0, '']);

      const refs = (await store.listStatuses()).map((s) => s.ref).sort();
      assert.deepEqual(refs, ['ingest-a', 'ingest-b']);

      await store.abort('ingest-b');
      await rejectsWith(store.status('ingest-b'), 'not-found');
      await rejectsWith(store.abort('ingest-b'), 'not-found');
      await rejectsWith(store.abort('never-started'), 'not-found');
      await rejectsWith(store.status('never-started'), 'not-found');
      assert.deepEqual(
        (await store.listStatuses()).map((s) => s.ref),
        ['ingest-a'],
      );
      await a.close();
      await store.abort('ingest-a');
      assert.deepEqual(await store.listStatuses(), []);
    });

    it('truncates an ingest to 0', async (store) => {
      const w = await store.writer({ ref: 'truncate' });
      await w.write(bytes(300, 14));
      await w.truncate(0);
      assert.equal(w.offset, 0);
      const data = bytes(120, 15);
      await w.write(data);
      assert.equal(w.digest(), sha256(data));
      assert.equal(await w.commit(data.length, sha256(data)), sha256(data));
    });

    it('deletes blobs; a missing one is NotFound', async (store) => {
      const dgst = await put(store, bytes(64, 16));
      await store.delete(dgst);
      await rejectsWith(store.info(dgst), 'not-found');
      await rejectsWith(collect(store.read(dgst)), 'not-found');
      await rejectsWith(store.delete(dgst), 'not-found');
      await rejectsWith(store.info(sha256(bytes(1, 17))), 'not-found');
    });

    it('walks every committed blob and no ingest', async (store) => {
      const seen: string[] = [];
      await store.walk((info) => {
        seen.push(info.digest);
      });
      assert.deepEqual(seen, []);

      const blobs = [bytes(10, 18), bytes(20, 19), bytes(30, 20)];
      const digests = [];
      for (const b of blobs) digests.push(await put(store, b));
      const w = await store.writer({ ref: 'pending' });
      await w.write(bytes(5, 21));

      const infos = new Map<string, number>();
      await store.walk(async (info) => {
        infos.set(info.digest, info.size);
      });
      assert.deepEqual(
        [...infos].sort(),
        digests.map((d, i) => [d, blobs[i]?.length]).sort(),
      );
      await w.close();
    });

    it('accepts sha512 expected digests', async (store) => {
      const data = bytes(2000, 22);
      const expected = sha512(data);
      const w = await store.writer({ ref: 'sha512', total: data.length, expected });
      await w.write(data);
      assert.equal(await w.commit(data.length, expected), expected);
      const info = await store.info(expected);
      assert.equal(info.digest, expected);
      assert.equal(info.size, data.length);
      assert.deepEqual(await collect(store.read(expected)), data);
      await rejectsWith(store.writer({ ref: 'sha512-again', expected }), 'already-exists');

      // Told only at commit: the store must still verify it.
      const late = bytes(3000, 23);
      const w2 = await store.writer({ ref: 'sha512-late' });
      await w2.write(late);
      await rejectsWith(w2.commit(late.length, sha512(bytes(3000, 24))), 'failed-precondition');
      const w3 = await store.writer({ ref: 'sha512-late' });
      assert.equal(await w3.commit(late.length, sha512(late)), sha512(late));
      const seen: string[] = [];
      await store.walk((i) => {
        seen.push(i.digest);
      });
      assert.deepEqual(seen.sort(), [expected, sha512(late)].sort());
      await store.delete(expected);
      await rejectsWith(store.info(expected), 'not-found');
    });

    it('refuses malformed digests and refs with InvalidArgument', async (store) => {
      const hex = '0'.repeat(64);
      const bad = [
        '',
        'sha256',
        'sha256:',
        `sha256:${hex.slice(1)}`,
        `sha256:${hex}0`,
        `sha256:${'A'.repeat(64)}`,
        `sha256:${hex}\n`,
        `SHA256:${hex}`,
        `md5:${'0'.repeat(32)}`,
        `sha384:${'0'.repeat(96)}`,
        `sha512:${hex}`,
        'sha256:../../etc',
        `sha256:../${hex.slice(3)}`,
        `../sha256:${hex}`,
      ];
      for (const dgst of bad) {
        const named = /^[\x20-\x7e]+$/.test(dgst) ? new RegExp(escapeRegExp(dgst)) : undefined;
        await rejectsWith(store.info(dgst), 'invalid-argument', named, `info ${JSON.stringify(dgst)}`);
        await rejectsWith(collect(store.read(dgst)), 'invalid-argument', undefined, `read ${JSON.stringify(dgst)}`);
        await rejectsWith(store.delete(dgst), 'invalid-argument', undefined, `delete ${JSON.stringify(dgst)}`);
        if (dgst) {
          await rejectsWith(store.writer({ ref: 'bad', expected: dgst }), 'invalid-argument', undefined, dgst);
        }
      }
      const w = await store.writer({ ref: 'bad-commit' });
      await w.write(bytes(1, 25));
      await rejectsWith(w.commit(1, 'sha256:../../etc'), 'invalid-argument');
      await rejectsWith(store.writer({ ref: '' }), 'invalid-argument');
      await rejectsWith(store.status(''), 'invalid-argument');
      await rejectsWith(store.abort(''), 'invalid-argument');
      let n = 0;
      await store.walk(() => {
        n++;
      });
      assert.equal(n, 0);
    });

    it('streams a large write (8 MiB in 64 KiB chunks) and reads it in bounded chunks', async (store) => {
      const chunk = 64 << 10;
      const total = 8 << 20;
      const hash = createHash('sha256');
      const w = await store.writer({ ref: 'large', total });
      for (let i = 0; i < total / chunk; i++) {
        const part = bytes(chunk, 100 + i);
        hash.update(part);
        await w.write(part);
      }
      const expected = `sha256:${hash.digest('hex')}`;
      assert.equal(w.offset, total);
      assert.equal(await w.commit(total, expected), expected);

      const back = createHash('sha256');
      let size = 0;
      let chunks = 0;
      for await (const part of store.read(expected)) {
        assert.ok(part.length <= 4 << 20, `chunk of ${part.length} bytes`);
        back.update(part);
        size += part.length;
        chunks++;
      }
      assert.equal(size, total);
      assert.ok(chunks >= 2);
      assert.equal(`sha256:${back.digest('hex')}`, expected);
    });

    it('runs writers on different refs concurrently', async (store) => {
      const n = 8;
      const parts = Array.from({ length: n }, (_, i) => [bytes(30_000, 200 + i), bytes(20_000, 300 + i)] as const);
      const writers = await Promise.all(parts.map((_, i) => store.writer({ ref: `concurrent-${i}` })));
      await Promise.all(writers.map((w, i) => w.write(parts[i]?.[0] as Uint8Array)));
      await Promise.all(writers.map((w, i) => w.write(parts[i]?.[1] as Uint8Array)));
      const statuses = await store.listStatuses();
      assert.equal(statuses.length, n);
      const committed = await Promise.all(writers.map((w) => w.commit(50_000)));
      const want = parts.map(([a, b]) => sha256(concat(a, b)));
      assert.deepEqual(committed, want);
      for (const [i, dgst] of want.entries()) {
        const [a, b] = parts[i] as readonly [Uint8Array, Uint8Array];
        assert.deepEqual(await collect(store.read(dgst)), concat(a, b));
      }
    });

    it('keeps writes in call order when they are not awaited one by one', async (store) => {
      const pieces = Array.from({ length: 16 }, (_, i) => bytes(1000 + i, 400 + i));
      const w = await store.writer({ ref: 'unawaited' });
      await Promise.all(pieces.map((p) => w.write(p)));
      const all = concat(...pieces);
      assert.equal(await w.commit(all.length, sha256(all)), sha256(all));
    });

    it('reads a blob again, in ranges, and not once it is deleted (whatever a store keeps in memory)', async (store) => {
      const data = bytes(5000, 9);
      const digest = await put(store, data);
      for (let i = 0; i < 2; i++) {
        assert.deepEqual(await collect(store.read(digest)), data);
        assert.deepEqual(await collect(store.read(digest, 100, 50)), data.subarray(100, 150));
        assert.deepEqual(await collect(store.read(digest, 4990, 100)), data.subarray(4990));
        assert.deepEqual(await collect(store.read(digest, 5000)), new Uint8Array());
        await rejectsWith(collect(store.read(digest, 5001)), 'out-of-range');
      }
      await store.delete(digest);
      await rejectsWith(collect(store.read(digest)), 'not-found');
      assert.equal(await put(store, data), digest);
      assert.deepEqual(await collect(store.read(digest, 1)), data.subarray(1));
    });

    it('copies from a file descriptor (when the store can), after writes, resuming after a short file', async (store) => {
      const probe = await store.writer({ ref: 'copy-probe' });
      const supported = typeof probe.copyFrom === 'function';
      await probe.close();
      await store.abort('copy-probe');
      if (!supported) return; // optional: callers fall back to write()

      const dir = await mkdtemp(join(tmpdir(), 'berth-copy-from-'));
      const data = bytes(20 * 1024 * 1024 + 12_345, 7); // more than a few chunks of any sensible size
      const file = join(dir, 'source');
      await writeFile(file, data.subarray(0, 9 * 1024 * 1024 + 1));
      const fh = await open(file, 'r+');
      try {
        const w = await store.writer({ ref: 'copy', total: data.length, expected: sha256(data) });
        await w.write(data.subarray(0, 1000)); // the file's first 1000 bytes are skipped, already written
        // The file is shorter than asked: FailedPrecondition, the writer keeps all the file had.
        await rejectsWith((w.copyFrom as NonNullable<ContentWriter['copyFrom']>)(fh.fd, data.length), 'failed-precondition', /ends at/);
        assert.equal(w.offset, 9 * 1024 * 1024 + 1);
        assert.equal(w.digest(), sha256(data.subarray(0, w.offset)));
        await w.close();

        await fh.write(data.subarray(9 * 1024 * 1024 + 1), 0, undefined, 9 * 1024 * 1024 + 1);
        const resumed = await store.writer({ ref: 'copy' });
        assert.equal(resumed.offset, 9 * 1024 * 1024 + 1);
        await (resumed.copyFrom as NonNullable<ContentWriter['copyFrom']>)(fh.fd, data.length);
        assert.equal(resumed.offset, data.length);
        assert.equal(await resumed.commit(data.length, sha256(data)), sha256(data));
        assert.deepEqual(await collect(store.read(sha256(data))), data);

        // An abort signal stops it between chunks; what was copied stays, consistent.
        const aborted = await store.writer({ ref: 'copy-aborted' });
        const abort = new AbortController();
        abort.abort();
        await assert.rejects((aborted.copyFrom as NonNullable<ContentWriter['copyFrom']>)(fh.fd, data.length, abort.signal));
        assert.equal(aborted.digest(), sha256(data.subarray(0, aborted.offset)));
        await aborted.close();
        await store.abort('copy-aborted');
      } finally {
        await fh.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}

/** Deterministic bytes that differ by seed. */
function bytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function sha512(data: Uint8Array): string {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
  return concat(...parts);
}

async function put(store: ContentStore, data: Uint8Array): Promise<string> {
  const w: ContentWriter = await store.writer({ ref: `put-${sha256(data)}` });
  await w.write(data);
  return w.commit(data.length, sha256(data));
}

/** Rejects with a berth error of `kind` (checked by shape, as the gRPC edge does), its message matching `message`. */
async function rejectsWith(p: Promise<unknown>, kind: ErrorKind, message?: RegExp, what?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    const got = errorKindOf(err);
    assert.equal(got, kind, `${what ? `${what}: ` : ''}want a ${kind} error, got ${got ?? 'a plain'} error: ${String(err)}`);
    if (message) assert.match((err as Error).message, message);
    return true;
  });
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
