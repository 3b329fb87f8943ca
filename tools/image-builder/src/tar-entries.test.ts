import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import tar from 'tar-stream';
import { fileEntry, normalizePath, prepareEntries, type TarEntry, tarStream } from './tar-entries.js';

async function readTar(chunks: AsyncIterable<Buffer>) {
  const extract = tar.extract();
  const feeding = (async () => {
    for await (const c of chunks) if (!extract.write(c)) await new Promise<void>((r) => extract.once('drain', () => r()));
    extract.end(undefined);
  })();
  const reading = (async () => {
    const out: { name: string; type: string; mode: number; mtime: number; uid: number; body: Buffer }[] = [];
    for await (const entry of extract) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      const h = entry.header;
      out.push({ name: h.name, type: h.type, mode: h.mode, mtime: h.mtime.getTime(), uid: h.uid, body: Buffer.concat(parts) });
    }
    return out;
  })();
  // A failing producer ends the extract too: report the producer's error.
  feeding.catch(() => extract.destroy());
  const [, out] = await Promise.all([feeding, reading]);
  return out;
}

describe('tar entries', () => {
  test('normalizePath strips slashes and refuses ..', () => {
    assert.equal(normalizePath('/a//b/./c/'), 'a/b/c');
    assert.throws(() => normalizePath('a/../b'), /bad path/);
    assert.throws(() => normalizePath('/'), /bad path/);
  });

  test('prepareEntries adds missing parents, sorts by path, refuses duplicates', () => {
    const entries = prepareEntries([fileEntry('/z/y/x', 'x'), fileEntry('a', 'a'), { type: 'directory', path: 'z', mode: 0o700 }]);
    assert.deepEqual(
      entries.map((e) => [e.path, e.type]),
      [
        ['a', 'file'],
        ['z', 'directory'],
        ['z/y', 'directory'],
        ['z/y/x', 'file'],
      ],
    );
    assert.equal((entries[1] as { mode?: number }).mode, 0o700, 'an explicit directory keeps its mode');
    assert.throws(() => prepareEntries([fileEntry('a', '1'), fileEntry('/a', '2')]), /two entries for a/);
    assert.throws(() => prepareEntries([fileEntry('a', '1'), fileEntry('a/b', '2')]), /not a directory/);
  });

  test('tarStream writes fixed headers and lazy contents', async () => {
    const big = 3 * 1024 * 1024 + 7;
    const entries: TarEntry[] = prepareEntries([
      fileEntry('etc/hostname', 'box\n', 0o600),
      { type: 'symlink', path: 'bin/sh', linkname: 'busybox' },
      {
        type: 'file',
        path: 'data/big',
        size: big,
        content: function* () {
          for (let left = big; left > 0; left -= 65536) yield Buffer.alloc(Math.min(65536, left), 1);
        },
      },
    ]);
    const got = await readTar(tarStream(entries, { mtime: new Date(1000) }));
    assert.deepEqual(
      got.map((e) => [e.name, e.type, e.mode.toString(8), e.mtime, e.uid]),
      [
        ['bin', 'directory', '755', 1000, 0],
        ['bin/sh', 'symlink', '777', 1000, 0],
        ['data', 'directory', '755', 1000, 0],
        ['data/big', 'file', '644', 1000, 0],
        ['etc', 'directory', '755', 1000, 0],
        ['etc/hostname', 'file', '600', 1000, 0],
      ],
    );
    assert.equal(got[3]?.body.length, big);
    assert.equal(got[5]?.body.toString(), 'box\n');
  });

  test('a file whose content is not its declared size fails the stream', async () => {
    const entries: TarEntry[] = [{ type: 'file', path: 'short', size: 10, content: () => [Buffer.from('abc')] }];
    await assert.rejects(readTar(tarStream(entries)), /3 bytes, not 10/);
    const long: TarEntry[] = [{ type: 'file', path: 'long', size: 2, content: () => [Buffer.from('abc')] }];
    await assert.rejects(readTar(tarStream(long)), /longer than its size/);
  });
});
