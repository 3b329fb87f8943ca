import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeMappings, decodeVlq, SourceMapper } from './source-map.js';

test('base64 VLQ: sign in the lowest bit, continuation in the sixth', () => {
  assert.deepEqual(decodeVlq('AAAA'), [0, 0, 0, 0]);
  assert.deepEqual(decodeVlq('AACA'), [0, 0, 1, 0]);
  assert.deepEqual(decodeVlq('D'), [-1]);
  assert.deepEqual(decodeVlq('gB'), [16]);
  assert.throws(() => decodeVlq('!'), /bad VLQ digit/);
});

test('mappings: generated column per line, source and original line across lines', () => {
  assert.deepEqual(decodeMappings('AAAA,IAAC;;AACA'), [[[0, 0, 0], [4, 0, 0]], [], [[0, 0, 1]]]);
});

test("this package's own dist maps back to its TypeScript", () => {
  const js = fileURLToPath(new URL('./stats.js', import.meta.url));
  const lines = readFileSync(js, 'utf8').split('\n');
  const line = lines.findIndex((l) => l.includes('export function megabytesPerSecond'));
  const ts = readFileSync(fileURLToPath(new URL('../src/stats.ts', import.meta.url)), 'utf8').split('\n');
  const at = new SourceMapper().original(js, line, 0);
  assert.ok(at, 'a mapping');
  assert.match(at.file, /tools\/bench\/src\/stats\.ts$/);
  assert.match(ts[at.line - 1] ?? '', /export function megabytesPerSecond/);
  assert.equal(new SourceMapper().original('/nonexistent.js', 0, 0), undefined);
});
