import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { InvalidArgumentError, type MetaKey, type ReadTx, type WriteTx } from '@berth/plugin-api';
import { Level } from 'level';
import { LevelMetadataStore, MetadataOpenError, SCHEMA_VERSION } from './level-metadata-store.js';

let root: string;
let n = 0;
const open = new Set<LevelMetadataStore>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'berth-metadata-'));
});

after(async () => {
  for (const store of open) await store.close();
  await rm(root, { recursive: true, force: true });
});

const dbPath = () => join(root, `db${++n}`);

async function openStore(path = dbPath()): Promise<LevelMetadataStore> {
  const store = await LevelMetadataStore.open(path);
  open.add(store);
  return store;
}

async function closeStore(store: LevelMetadataStore): Promise<void> {
  open.delete(store);
  await store.close();
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

async function keysUnder(tx: ReadTx, prefix: MetaKey): Promise<string[]> {
  const out: string[] = [];
  for await (const [key, value] of tx.range(prefix)) out.push(`${key.join('/')}=${dec(value)}`);
  return out;
}

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

test('a fresh database gets the schema version', async () => {
  const store = await openStore();
  assert.equal(await store.view(async (tx) => dec(await tx.get(['berth', 'schema']))), String(SCHEMA_VERSION));
  assert.equal(store.generation, 0);
  await closeStore(store);
});

test('update commits its writes; an update whose fn throws writes nothing', async () => {
  const store = await openStore();
  await store.update(async (tx) => {
    tx.put(['k', 'a'], enc('1'));
    tx.putJSON(['k', 'b'], { two: 2 });
  });
  await assert.rejects(
    store.update(async (tx) => {
      tx.put(['k', 'a'], enc('changed'));
      tx.del(['k', 'b']);
      tx.put(['k', 'c'], enc('new'));
      throw new Error('abort this change');
    }),
    /abort this change/,
  );
  await store.view(async (tx) => {
    assert.equal(dec(await tx.get(['k', 'a'])), '1');
    assert.deepEqual(await tx.getJSON(['k', 'b']), { two: 2 });
    assert.equal(await tx.get(['k', 'c']), undefined);
    assert.equal(await tx.getJSON(['k', 'c']), undefined);
  });
  // The store still takes writes after a failed one.
  const result = await store.update(async (tx) => {
    tx.put(['k', 'c'], enc('3'));
    return 'result';
  });
  assert.equal(result, 'result');
  assert.equal(await store.view(async (tx) => dec(await tx.get(['k', 'c']))), '3');
  await closeStore(store);
});

test('inside an update, get and range see the pending writes', async () => {
  const store = await openStore();
  await store.update(async (tx) => {
    tx.put(['p', 'a'], enc('a0'));
    tx.put(['p', 'b'], enc('b0'));
    tx.put(['p', 'd'], enc('d0'));
  });
  await store.update(async (tx) => {
    tx.put(['p', 'c'], enc('c1'));
    tx.put(['p', 'a'], enc('a1'));
    tx.del(['p', 'b']);
    assert.equal(dec(await tx.get(['p', 'a'])), 'a1');
    assert.equal(await tx.get(['p', 'b']), undefined);
    assert.equal(dec(await tx.get(['p', 'c'])), 'c1');
    assert.deepEqual(await keysUnder(tx, ['p']), ['p/a=a1', 'p/c=c1', 'p/d=d0']);
    assert.equal(await tx.has(['p']), true);
    // Outside the transaction nothing has changed yet.
    assert.deepEqual(await store.view((v) => keysUnder(v, ['p'])), ['p/a=a0', 'p/b=b0', 'p/d=d0']);
    // Deleting then putting again keeps the last write.
    tx.del(['p', 'd']);
    tx.put(['p', 'd'], enc('d1'));
    tx.del(['p', 'c']);
  });
  assert.deepEqual(await store.view((v) => keysUnder(v, ['p'])), ['p/a=a1', 'p/d=d1']);
  await store.update(async (tx) => {
    for (const k of ['a', 'd']) tx.del(['p', k]);
    assert.equal(await tx.has(['p']), false);
    assert.deepEqual(await keysUnder(tx, ['p']), []);
  });
  assert.equal(await store.view((v) => v.has(['p'])), false);
  await closeStore(store);
});

test('range by prefix takes whole segments and does not leak into siblings', async () => {
  const store = await openStore();
  await store.update(async (tx) => {
    tx.put(['a', 'b'], enc('self'));
    tx.put(['a', 'b', '1'], enc('x'));
    tx.put(['a', 'b', '2', 'deep'], enc('y'));
    tx.put(['a', 'bc', '1'], enc('sibling'));
    tx.put(['a', 'b!', '1'], enc('sibling2'));
    tx.put(['a', 'a', '1'], enc('before'));
    tx.put(['ab', 'b', '1'], enc('other root'));
  });
  const expected = ['a/b/1=x', 'a/b/2/deep=y'];
  assert.deepEqual(await store.view((tx) => keysUnder(tx, ['a', 'b'])), expected);
  // A write transaction sees the same, with and without pending writes.
  // Rolled back on purpose; an assertion failing inside would reject with another message.
  await assert.rejects(store.update(async (tx) => {
    assert.deepEqual(await keysUnder(tx, ['a', 'b']), expected);
    tx.put(['a', 'bc', '2'], enc('pending sibling'));
    tx.put(['a', 'b', '0'], enc('pending'));
    assert.deepEqual(await keysUnder(tx, ['a', 'b']), ['a/b/0=pending', ...expected]);
    throw new Error('roll back');
  }), (err: Error) => err.message === 'roll back');
  assert.deepEqual(await store.view((tx) => keysUnder(tx, ['a', 'bc'])), ['a/bc/1=sibling']);
  assert.equal(await store.view((tx) => tx.has(['a', 'c'])), false);
  assert.equal((await store.view((tx) => keysUnder(tx, ['a']))).length, 6);
  await closeStore(store);
});

test('range reads past one native batch, in key order, and an update may delete as it goes', async () => {
  const store = await openStore();
  const names = Array.from({ length: 2500 }, (_, i) => `k${String(i).padStart(5, '0')}`);
  await store.update(async (tx) => {
    for (const n of names) tx.put(['many', n], enc(n));
    tx.put(['many!'], enc('sibling'));
  });
  const seen = await store.view(async (tx) => {
    const out: string[] = [];
    for await (const [key, value] of tx.range(['many'])) out.push(`${key[1]}=${dec(value)}`);
    return out;
  });
  assert.deepEqual(seen, names.map((n) => `${n}=${n}`));
  // As the collector does: delete each entry while ranging over what is stored.
  await store.update(async (tx) => {
    for await (const [key] of tx.range(['many'])) tx.del(key);
  });
  assert.equal(await store.view((tx) => tx.has(['many'])), false);
  assert.equal(dec(await store.view((tx) => tx.get(['many!']))), 'sibling');
  await closeStore(store);
});

test('writers run one at a time: concurrent read-modify-write loses nothing', async () => {
  const store = await openStore();
  const increment = () =>
    store.update(async (tx) => {
      const value = Number(dec(await tx.get(['counter'])) ?? '0');
      // Give the other writer every chance to interleave.
      await new Promise((resolve) => setImmediate(resolve));
      tx.put(['counter'], enc(String(value + 1)));
    });
  const writer = async () => {
    for (let i = 0; i < 50; i++) await increment();
  };
  await Promise.all([writer(), writer()]);
  assert.equal(await store.view(async (tx) => dec(await tx.get(['counter']))), '100');
  assert.equal(store.generation, 100);
  await closeStore(store);
});

test('onCommit hooks run after the commit, and only when it commits', async () => {
  const store = await openStore();
  const seen: Array<string | undefined> = [];
  let order: string[] = [];
  const result = await store.update(async (tx) => {
    tx.put(['hooked'], enc('yes'));
    tx.onCommit(async () => {
      order.push('hook1');
      seen.push(await store.view(async (v) => dec(await v.get(['hooked']))));
    });
    tx.onCommit(() => void order.push('hook2'));
    order.push('fn');
    return 'done';
  });
  order.push('resolved');
  assert.equal(result, 'done');
  assert.deepEqual(seen, ['yes']);
  assert.deepEqual(order, ['fn', 'hook1', 'hook2', 'resolved']);

  order = [];
  await assert.rejects(
    store.update(async (tx) => {
      tx.put(['hooked'], enc('no'));
      tx.onCommit(() => void order.push('hook of a failed update'));
      throw new Error('fail');
    }),
  );
  assert.deepEqual(order, []);
  await closeStore(store);
});

test('a transaction cannot be written after it committed', async () => {
  const store = await openStore();
  let saved: WriteTx | undefined;
  await store.update(async (tx) => {
    saved = tx;
  });
  assert.throws(() => saved?.put(['late'], enc('x')), /already committed/);
  assert.throws(() => saved?.del(['late']), /already committed/);
  await closeStore(store);
});

test('generation counts committed updates that wrote something', async () => {
  const store = await openStore();
  const start = store.generation;
  await store.update(async (tx) => tx.put(['g'], enc('1')));
  assert.equal(store.generation, start + 1);
  await store.update(async (tx) => tx.del(['g']));
  assert.equal(store.generation, start + 2);
  await store.update(async (tx) => tx.get(['g']));
  assert.equal(store.generation, start + 2, 'a read-only update changes nothing');
  await store.update(async (tx) => tx.put(['g'], enc('x'))).then(() => {});
  await store.update(async () => {
    throw new Error('no');
  }).catch(() => {});
  assert.equal(store.generation, start + 3, 'a failed update changes nothing');
  await closeStore(store);
});

test('exclusive waits for the running writer and holds off new ones', async () => {
  const store = await openStore();
  const events: string[] = [];
  const writerGo = deferred();
  const exclusiveGo = deferred();
  const first = store.update(async (tx) => {
    events.push('writer1 start');
    await writerGo.promise;
    tx.put(['x'], enc('1'));
    events.push('writer1 end');
  });
  const gc = store.exclusive(async () => {
    events.push('exclusive start');
    assert.equal(await store.view(async (tx) => dec(await tx.get(['x']))), '1');
    await exclusiveGo.promise;
    events.push('exclusive end');
    return 'collected';
  });
  const second = store.update(async (tx) => {
    events.push('writer2');
    tx.put(['x'], enc('2'));
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['writer1 start']);
  writerGo.resolve();
  await first;
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['writer1 start', 'writer1 end', 'exclusive start']);
  // Readers are not held off.
  assert.equal(await store.view(async (tx) => dec(await tx.get(['x']))), '1');
  exclusiveGo.resolve();
  assert.equal(await gc, 'collected');
  await second;
  assert.deepEqual(events.slice(3), ['exclusive end', 'writer2']);
  // A failing exclusive section does not wedge the store.
  await assert.rejects(store.exclusive(async () => {
    throw new Error('gc failed');
  }), /gc failed/);
  await store.update(async (tx) => tx.put(['x'], enc('3')));
  await closeStore(store);
});

test('reopening keeps the data', async () => {
  const path = dbPath();
  const store = await openStore(path);
  await store.update(async (tx) => tx.putJSON(['v1', 'default', 'images', 'alpine'], { digest: 'sha256:abc' }));
  await closeStore(store);
  const again = await openStore(path);
  assert.deepEqual(await again.view((tx) => tx.getJSON(['v1', 'default', 'images', 'alpine'])), { digest: 'sha256:abc' });
  await closeStore(again);
});

test('a database of another schema version is refused', async () => {
  const path = dbPath();
  const store = await openStore(path);
  await store.update(async (tx) => tx.put(['berth', 'schema'], enc('2')));
  await closeStore(store);
  await assert.rejects(
    LevelMetadataStore.open(path),
    (err: unknown) => err instanceof MetadataOpenError && /schema version 2/.test(err.message),
  );
  // The refusal closed the database: opening it raw works.
  const raw = new Level(path);
  await raw.open();
  await raw.close();
});

test('a LevelDB database not written by berth is refused', async () => {
  const path = dbPath();
  const raw = new Level<string, string>(path);
  await raw.put('someone else', 'data');
  await raw.close();
  await assert.rejects(
    LevelMetadataStore.open(path),
    (err: unknown) => err instanceof MetadataOpenError && /no schema version/.test(err.message),
  );
});

test('a database open elsewhere is refused as locked', async () => {
  const path = dbPath();
  const store = await openStore(path);
  await assert.rejects(
    LevelMetadataStore.open(path),
    (err: unknown) => err instanceof MetadataOpenError && /locked/.test(err.message),
  );
  // The first one still works.
  await store.update(async (tx) => tx.put(['still'], enc('fine')));
  await closeStore(store);
});

test('a directory with files but no CURRENT is refused and left untouched', async () => {
  const path = dbPath();
  await mkdir(path);
  await writeFile(join(path, '000005.ldb'), 'table data');
  await writeFile(join(path, 'MANIFEST-000004'), 'manifest');
  await assert.rejects(
    LevelMetadataStore.open(path),
    (err: unknown) => err instanceof MetadataOpenError && /CURRENT/.test(err.message),
  );
  assert.deepEqual((await readdir(path)).sort(), ['000005.ldb', 'MANIFEST-000004']);
  assert.equal(await readFile(join(path, '000005.ldb'), 'utf8'), 'table data');
  assert.equal(await readFile(join(path, 'MANIFEST-000004'), 'utf8'), 'manifest');
});

test('an empty existing directory is a fresh database', async () => {
  const path = dbPath();
  await mkdir(path);
  const store = await openStore(path);
  await closeStore(store);
});

test('a corrupted MANIFEST is refused, not repaired', async () => {
  const path = dbPath();
  const store = await openStore(path);
  await store.update(async (tx) => tx.put(['precious'], enc('data')));
  await closeStore(store);
  const manifest = (await readdir(path)).find((f) => f.startsWith('MANIFEST-'));
  assert.ok(manifest);
  await writeFile(join(path, manifest), Buffer.alloc(256, 0xab));
  await assert.rejects(
    LevelMetadataStore.open(path),
    (err: unknown) => err instanceof MetadataOpenError && /cannot be opened/.test(err.message) && /will not repair/.test(err.message),
  );
  // Still corrupt: nothing was rewritten.
  assert.deepEqual(await readFile(join(path, manifest)), Buffer.alloc(256, 0xab));
});

test('keys with a NUL character are refused', async () => {
  const store = await openStore();
  await assert.rejects(store.update(async (tx) => tx.put(['a\u0000b'], enc('x'))), InvalidArgumentError);
  await assert.rejects(store.update(async (tx) => tx.del(['ok', '\u0000'])), InvalidArgumentError);
  await assert.rejects(store.view((tx) => tx.get(['a', 'b\u0000'])), InvalidArgumentError);
  await assert.rejects(store.view((tx) => keysUnder(tx, ['\u0000'])), InvalidArgumentError);
  // Segments joined with NUL would have named this key.
  assert.equal(await store.view((tx) => tx.get(['a', 'b'])), undefined);
  assert.equal(store.generation, 0);
  await closeStore(store);
});
