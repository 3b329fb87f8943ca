import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { contentStoreSuite } from '@berth/compliance';
import { ContentStore, errorKindOf, PluginType } from '@berth/plugin-api';
import contentPlugin from './index.js';
import { LocalContentStore } from './local-content-store.js';

/** 3 MiB of patterned bytes, the same in the test and in the child process. */
function crashData(): Buffer {
  const data = Buffer.alloc(3 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  return data;
}

/** Run by a child process: argv = [store module, root]. Must build the same bytes as crashData. */
const crashChild = `
import { createHash } from 'node:crypto';
const [storeModule, root] = process.argv.slice(1);
const { LocalContentStore } = await import(storeModule);
const data = Buffer.alloc(3 << 20);
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
const expected = 'sha256:' + createHash('sha256').update(data).digest('hex');
const store = await LocalContentStore.open(root);
const w = await store.writer({ ref: 'crash', total: data.length, expected });
await w.write(data.subarray(0, 1 << 20));
await w.write(data.subarray(1 << 20, 1_500_000));
process.stdout.write('wrote ' + w.offset + '\\n');
setInterval(() => {}, 1000);
`;

async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'berth-content-'));
}

contentStoreSuite('LocalContentStore', async () => {
  const root = await tempRoot();
  return { store: await LocalContentStore.open(root), cleanup: () => rm(root, { recursive: true, force: true }) };
});

const sha256 = (data: Uint8Array | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const sha256hex = (text: string) => createHash('sha256').update(text).digest('hex');

function kind(expected: string) {
  return (err: unknown) => {
    assert.equal(errorKindOf(err), expected, String(err));
    return true;
  };
}

/** A test with a fresh root, removed afterwards. */
function withRoot(title: string, fn: (root: string) => Promise<void>) {
  test(title, async () => {
    const root = await tempRoot();
    try {
      await fn(root);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
}

describe('LocalContentStore on disk', () => {
  withRoot('lays out ingests and blobs as containerd does', async (root) => {
    const store = await LocalContentStore.open(root);
    const data = Buffer.from('hello, berth');
    const expected = sha256(data);
    const w = await store.writer({ ref: 'layout', total: data.length, expected });
    await w.write(data.subarray(0, 5));
    await w.close();

    const ingest = join(root, 'ingest', sha256hex('layout'));
    assert.deepEqual((await readdir(ingest)).sort(), ['data', 'expected', 'ref', 'startedat', 'total', 'updatedat']);
    assert.equal(await readFile(join(ingest, 'ref'), 'utf8'), 'layout');
    assert.equal(await readFile(join(ingest, 'total'), 'utf8'), String(data.length));
    assert.equal(await readFile(join(ingest, 'expected'), 'utf8'), expected);
    assert.equal((await readFile(join(ingest, 'data'), 'utf8')), 'hello');
    const startedAt = new Date(await readFile(join(ingest, 'startedat'), 'utf8'));
    assert.ok(Math.abs(Date.now() - startedAt.getTime()) < 60_000);

    const w2 = await store.writer({ ref: 'layout' });
    await w2.write(data.subarray(5));
    await w2.commit(data.length, expected);
    const blob = join(root, 'blobs', 'sha256', expected.slice('sha256:'.length));
    assert.equal(await readFile(blob, 'utf8'), 'hello, berth');
    assert.equal((await stat(blob)).mode & 0o777, 0o444, 'blobs are read-only');
    assert.deepEqual(await readdir(join(root, 'ingest')), [], 'the ingest is gone');
  });

  withRoot('a small blob written through write() is read from memory after its commit; one resumed or copied is read from disk', async (root) => {
    const store = await LocalContentStore.open(root);
    const collect = async (digest: string) => {
      const chunks: Uint8Array[] = [];
      for await (const chunk of store.read(digest)) chunks.push(chunk);
      return Buffer.concat(chunks);
    };
    const put = async (ref: string, data: Buffer, how: 'write' | 'resume') => {
      const w = await store.writer({ ref });
      if (how === 'resume') {
        await w.write(data.subarray(0, 3));
        await w.close();
        const again = await store.writer({ ref });
        await again.write(data.subarray(3));
        return again.commit(data.length, sha256(data));
      }
      await w.write(data.subarray(0, 3));
      await w.write(data.subarray(3));
      return w.commit(data.length, sha256(data));
    };
    const written = Buffer.from('{"schemaVersion":2}');
    const resumed = Buffer.from('{"schemaVersion":3}');
    const digests = [await put('w', written, 'write'), await put('r', resumed, 'resume')];
    // With the files gone behind the store's back, only what it keeps in memory can still be read.
    for (const d of digests) await unlink(join(root, 'blobs', 'sha256', d.slice('sha256:'.length)));
    assert.deepEqual(await collect(digests[0] as string), written);
    await assert.rejects(collect(digests[1] as string), /not found/);
  });

  withRoot('resumes an ingest left by a process that was killed', async (root) => {
    const data = crashData();
    const expected = sha256(data);
    const half = 1_500_000;

    // A child process writes half through its own store, then dies by SIGKILL with the writer open.
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', crashChild, new URL('./local-content-store.js', import.meta.url).href, root],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [line] = await once(child.stdout, 'data');
    assert.equal(String(line).trim(), `wrote ${half}`);
    child.kill('SIGKILL');
    const [, signal] = await once(child, 'exit');
    assert.equal(signal, 'SIGKILL');

    const store = await LocalContentStore.open(root);
    const st = await store.status('crash');
    assert.equal(st.offset, half);
    assert.equal(st.total, data.length);
    assert.equal(st.expected, expected);
    assert.deepEqual(
      (await store.listStatuses()).map((s) => s.ref),
      ['crash'],
    );
    const w = await store.writer({ ref: 'crash', total: data.length, expected });
    assert.equal(w.offset, half);
    assert.equal(w.digest(), sha256(data.subarray(0, half)));
    await w.write(data.subarray(half));
    assert.equal(await w.commit(data.length, expected), expected);
    assert.equal((await store.info(expected)).size, data.length);
  });

  withRoot('opens a second store on a root whose first store still holds a writer', async (root) => {
    // Locks live in one store instance's memory: a new instance (as after a restart) is not blocked.
    const first = await LocalContentStore.open(root);
    const w1 = await first.writer({ ref: 'shared' });
    await w1.write(Buffer.from('abc'));
    const second = await LocalContentStore.open(root);
    const w2 = await second.writer({ ref: 'shared' });
    assert.equal(w2.offset, 3);
    assert.equal(w2.digest(), sha256('abc'));
    await w2.close();
    await w1.close();
  });

  withRoot('on resume the recorded total stands and the latest expected digest wins, as in containerd', async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer({ ref: 'fixed', total: 10, expected: sha256('x') });
    await w.write(Buffer.from('01234'));
    await w.close();
    const w2 = await store.writer({ ref: 'fixed', total: 11, expected: sha256('0123456789') });
    assert.equal(w2.offset, 5);
    const status = await store.status('fixed');
    assert.equal(status.total, 10);
    assert.equal(status.expected, sha256('0123456789'));
    await w2.write(Buffer.from('56789'));
    assert.equal(await w2.commit(10), sha256('0123456789'));
  });

  withRoot('keeps the recorded total when a resume gives none, and verifies against it', async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer({ ref: 'sized', total: 8 });
    await w.write(Buffer.from('abc'));
    await w.close();
    const w2 = await store.writer({ ref: 'sized' });
    await assert.rejects(w2.commit(0), /unexpected commit size 3, expected 8/);
    assert.equal((await store.status('sized')).offset, 3);
  });

  withRoot('treats a half-made ingest (no ref file) as absent and starts it afresh', async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer({ ref: 'half' });
    await w.write(Buffer.from('stale'));
    await w.close();
    const ingest = join(root, 'ingest', sha256hex('half'));
    await rm(join(ingest, 'ref'));
    await assert.rejects(store.status('half'), kind('not-found'));
    assert.deepEqual(await store.listStatuses(), []);
    const w2 = await store.writer({ ref: 'half' });
    assert.equal(w2.offset, 0);
    await w2.write(Buffer.from('fresh'));
    assert.equal(await w2.commit(5), sha256('fresh'));
  });

  withRoot('a commit leaves no ingest directory, also when something else was put in it', async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer({ ref: 'tidy' });
    await w.write(Buffer.from('tidy'));
    const ingest = join(root, 'ingest', sha256hex('tidy'));
    await writeFile(join(ingest, 'stray'), 'not ours');
    assert.equal(await w.commit(4), sha256('tidy'));
    assert.deepEqual(await readdir(join(root, 'ingest')), []);
    const w2 = await store.writer({ ref: 'tidy2' });
    await w2.write(Buffer.from('tidy'));
    // The blob exists by now: the commit says so and still removes its ingest.
    await assert.rejects(w2.commit(4), kind('already-exists'));
    assert.deepEqual(await readdir(join(root, 'ingest')), []);
  });

  withRoot('keeps hostile refs and digests inside the root', async (root) => {
    const store = await LocalContentStore.open(join(root, 'content'));
    const refs = ['../../x', '/etc/passwd', '..', '.', 'a/../../b', 'nul\0byte', '\n', 'x'.repeat(4096)];
    for (const ref of refs) {
      const w = await store.writer({ ref });
      await w.write(Buffer.from(ref));
      await w.close();
      assert.equal((await store.status(ref)).ref, ref);
    }
    assert.deepEqual((await store.listStatuses()).map((s) => s.ref).sort(), [...refs].sort());
    const names = await readdir(join(root, 'content', 'ingest'));
    assert.ok(names.every((n) => /^[0-9a-f]{64}$/.test(n)), names.join(','));
    for (const ref of refs) await store.abort(ref);
    assert.deepEqual((await readdir(root)).sort(), ['content']);

    const hostile = ['sha256:../../etc', 'sha256:../../../../etc/passwd', '../../etc', 'sha256/../../x', 'sha512:..'];
    for (const digest of hostile) {
      await assert.rejects(store.info(digest), kind('invalid-argument'));
      await assert.rejects(store.delete(digest), kind('invalid-argument'));
      await assert.rejects(store.writer({ ref: 'r', expected: digest }), kind('invalid-argument'));
      await assert.rejects(async () => {
        for await (const _ of store.read(digest)) break;
      }, kind('invalid-argument'));
    }
    assert.deepEqual((await readdir(join(root, 'content'))).sort(), ['blobs', 'ingest']);
  });

  withRoot('walk skips what is not a blob', async (root) => {
    const store = await LocalContentStore.open(root);
    const dgst = sha256('blob');
    const w = await store.writer({ ref: 'walk' });
    await w.write(Buffer.from('blob'));
    await w.commit(4, dgst);
    await writeFile(join(root, 'blobs', 'sha256', 'not-a-digest'), 'x');
    await writeFile(join(root, 'blobs', 'sha256', `${'0'.repeat(63)}`), 'x');
    await rm(join(root, 'blobs', 'md5'), { recursive: true, force: true });
    const seen: string[] = [];
    await store.walk((info) => {
      seen.push(info.digest);
    });
    assert.deepEqual(seen, [dgst]);
  });

  withRoot('refuses writes after commit or close', async (root) => {
    const store = await LocalContentStore.open(root);
    const w = await store.writer({ ref: 'done' });
    await w.write(Buffer.from('x'));
    await w.commit(1);
    await assert.rejects(w.write(Buffer.from('y')), kind('failed-precondition'));
    await assert.rejects(w.commit(1), kind('failed-precondition'));
    await w.close();
  });
});

describe('content plugin', () => {
  test('is containerd content plugin and opens the store under its root', async () => {
    assert.equal(contentPlugin.type, PluginType.Content);
    assert.equal(contentPlugin.id, 'content');
    assert.equal(contentPlugin.provides, ContentStore);
    const root = await tempRoot();
    try {
      const exports: Record<string, string> = {};
      const pluginRoot = join(root, 'io.containerd.content.v1.content');
      const ctx = { root: pluginRoot, export: (k: string, v: string) => (exports[k] = v) };
      const store = await contentPlugin.init(ctx as unknown as Parameters<typeof contentPlugin.init>[0]);
      assert.ok(store instanceof LocalContentStore);
      assert.deepEqual((await readdir(pluginRoot)).sort(), ['blobs', 'ingest']);
      assert.equal(exports.root, pluginRoot);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
