import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { errorKindOf } from '@berth/plugin-api';
import { cleanEntryName } from './layer-applier.js';
import { type TarEntry, TarReader } from './tar-reader.js';
import { END_OF_ARCHIVE, encodeHeader } from './tar-writer.js';
import { isRoot, layerOf, tarOf, tempDir } from './test-support.js';
import { lsetxattr } from '@berth/sys';

async function readAll(tar: Buffer, chunk = 7919): Promise<{ entries: TarEntry[]; data: string[] }> {
  const reader = new TarReader(layerOf(tar, undefined, chunk).open());
  const entries: TarEntry[] = [];
  const data: string[] = [];
  for (let e = await reader.next(); e; e = await reader.next()) {
    entries.push(e);
    const parts: Buffer[] = [];
    for await (const c of reader.body()) parts.push(Buffer.from(c));
    data.push(Buffer.concat(parts).toString());
  }
  return { entries, data };
}

function kind(expected: string) {
  return (err: unknown) => errorKindOf(err) === expected;
}

/** Rewrite a field of the first header and fix its checksum. */
function patchHeader(tar: Buffer, off: number, bytes: number[]): Buffer {
  const out = Buffer.from(tar);
  for (let i = 0; i < bytes.length; i++) out[off + i] = bytes[i];
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[i];
  out.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return out;
}

let work: string;
before(async () => {
  work = await tempDir();
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('TarReader', () => {
  test('reads what GNU tar writes: gnu and pax formats, long names and link targets', async () => {
    const src = join(work, 'src');
    const long = `${'d'.repeat(120)}/${'e'.repeat(120)}`;
    mkdirSync(join(src, long), { recursive: true });
    writeFileSync(join(src, long, 'file'), 'content');
    symlinkSync(`${'t'.repeat(150)}/target`, join(src, 'link'));
    for (const format of ['gnu', 'pax', 'ustar']) {
      if (format === 'ustar') continue; // ustar cannot hold a 150-byte link target
      const tar = execFileSync('tar', [`--format=${format}`, '-C', src, '-cf', '-', '.']);
      for (const chunk of [1, 511, 512, 7919, 1 << 20]) {
        const { entries, data } = await readAll(tar, chunk);
        const file = entries.findIndex((e) => e.name === `./${long}/file`);
        assert.ok(file >= 0, `${format}: long name`);
        assert.equal(data[file], 'content');
        assert.equal(entries.find((e) => e.name === './link')?.linkname, `${'t'.repeat(150)}/target`, format);
      }
    }
  });

  test('binary xattrs from GNU tar --xattrs survive byte for byte', { skip: !isRoot && 'needs root' }, async () => {
    const src = join(work, 'xattrs');
    mkdirSync(src);
    writeFileSync(join(src, 'ping'), 'x');
    const cap = Buffer.from('01000002c0200000000000000000000000000000', 'hex');
    lsetxattr(join(src, 'ping'), 'security.capability', cap);
    lsetxattr(join(src, 'ping'), 'user.bin', Buffer.from([0, 0xff, 0x80, 0x0a]));
    const tar = execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', '-', 'ping']);
    const { entries } = await readAll(tar);
    assert.deepEqual(entries[0].xattrs.get('security.capability'), cap);
    assert.deepEqual(entries[0].xattrs.get('user.bin'), Buffer.from([0, 0xff, 0x80, 0x0a]));
  });

  test('PAX records override the header; times keep their fraction', async () => {
    const tar = Buffer.concat([
      paxEntry({ path: 'renamed/ü', uid: '3000000000', mtime: '1600000000.123456789', atime: '1600000001.5' }),
      encodeHeader({ name: 'short', type: 'file', mode: 0o644, uid: 1, gid: 2, mtime: 3, size: 0 }),
      END_OF_ARCHIVE,
    ]);
    const [e] = (await readAll(tar)).entries;
    assert.equal(e.name, 'renamed/ü');
    assert.equal(e.uid, 3_000_000_000);
    assert.equal(e.gid, 2);
    assert.ok(Math.abs(e.mtime - 1_600_000_000.123457) < 1e-5);
    assert.equal(e.atime, 1600000001.5);
  });

  test('base-256 numbers', async () => {
    const tar = tarOf([{ name: 'big-uid' }]);
    const uid = [0x80, 0, 0, 0, 0x01, 0, 0, 0]; // 2^24 in 8 bytes
    const [e] = (await readAll(patchHeader(tar, 108, uid))).entries;
    assert.equal(e.uid, 1 << 24);
  });

  test('our writer round-trips long, non-ASCII names, big ids and xattrs', async () => {
    const name = `${'ж'.repeat(80)}/file`;
    const tar = tarOf([{ name, uid: 3_000_000_000, gid: 5, data: 'd', xattrs: new Map([['user.a', Buffer.from([1, 2, 3])]]) }]);
    const { entries, data } = await readAll(tar);
    assert.equal(entries[0].name, name);
    assert.equal(entries[0].uid, 3_000_000_000);
    assert.deepEqual(entries[0].xattrs.get('user.a'), Buffer.from([1, 2, 3]));
    assert.deepEqual(data, ['d']);
    const listed = execFileSync('tar', ['-tvf', '-'], { input: tar }).toString();
    assert.ok(listed.includes(name), 'GNU tar reads it too');
  });

  test('malformed archives', async () => {
    const tar = tarOf([{ name: 'a', data: 'a' }]);
    const bad = Buffer.from(tar);
    bad[0] ^= 1; // checksum no longer matches
    await assert.rejects(readAll(bad), kind('invalid-argument'), 'checksum');
    await assert.rejects(readAll(Buffer.concat([tar.subarray(0, 1024), Buffer.alloc(512), tar.subarray(0, 512)])), kind('invalid-argument'), 'zero block then data');
    await assert.rejects(readAll(patchHeader(tar, 156, [0x53])), kind('not-implemented'), 'sparse'); // 'S'
    await assert.rejects(readAll(patchHeader(tar, 156, [0x56])), kind('invalid-argument'), 'volume header'); // 'V'
    await assert.rejects(readAll(patchHeader(tar, 124, [0x39])), kind('invalid-argument'), 'octal'); // '9' in the size field
    await assert.rejects(readAll(Buffer.concat([paxRaw('3 a=bc\n'), tar])), kind('invalid-argument'), 'pax record');
    await assert.rejects(readAll(Buffer.concat([paxEntry({ 'SCHILY.xattr.user.a\0b': 'x' }), tar])), kind('invalid-argument'), 'NUL in an xattr name');
    // One zero block then the end is a clean end, as for Go's reader; so is no marker at all.
    assert.equal((await readAll(Buffer.concat([tar.subarray(0, 1024), Buffer.alloc(512)]))).entries.length, 1);
    assert.equal((await readAll(tar.subarray(0, 1024))).entries.length, 1);
  });

  test('global PAX headers are ignored', async () => {
    const global = paxRaw(record('path', 'global-name'), 'g');
    const { entries } = await readAll(Buffer.concat([global, tarOf([{ name: 'a' }])]));
    assert.deepEqual(
      entries.map((e) => e.name),
      ['a'],
    );
  });
});

test('entry names are cleaned inside the root; climbing out is refused', () => {
  assert.deepEqual(cleanEntryName('/etc//passwd'), ['etc', 'passwd']);
  assert.deepEqual(cleanEntryName('./a/./b/../c/'), ['a', 'c']);
  assert.deepEqual(cleanEntryName('a/..'), []);
  for (const name of ['..', '../x', 'a/../../x', '/../x', './..']) {
    assert.throws(() => cleanEntryName(name), kind('invalid-argument'), name);
  }
});

function record(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len++;
  return `${len}${body}`;
}

function paxRaw(records: string, typeflag = 'x'): Buffer {
  const data = Buffer.from(records);
  const header = Buffer.from(encodeHeader({ name: 'PaxHeader', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: data.length }));
  const patched = patchHeader(header, 156, [typeflag.charCodeAt(0)]);
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([patched, data, Buffer.alloc(pad)]);
}

function paxEntry(records: Record<string, string>): Buffer {
  return paxRaw(
    Object.entries(records)
      .map(([k, v]) => record(k, v))
      .join(''),
  );
}
