import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { deterministicRandom } from './deterministic-random.js';

async function collect(seed: string, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of deterministicRandom(seed, size)) parts.push(c);
  return Buffer.concat(parts);
}

test('deterministicRandom: same seed same bytes, another seed other bytes, incompressible', async () => {
  const a = await collect('seed-a', 3 * 1024 * 1024 + 5);
  assert.equal(a.length, 3 * 1024 * 1024 + 5);
  assert.deepEqual(await collect('seed-a', a.length), a);
  assert.notDeepEqual((await collect('seed-b', 1024)).subarray(0, 1024), a.subarray(0, 1024));
  // A prefix is the same whatever the total size: chunking does not change the stream.
  assert.deepEqual(await collect('seed-a', 100), a.subarray(0, 100));
  assert.ok(gzipSync(a.subarray(0, 1 << 20)).length > 1 << 20, 'random bytes do not compress');
  assert.equal((await collect('x', 0)).length, 0);
});
