#!/usr/bin/env node
// Write + commit N MiB (default 256) in 1 MiB chunks through LocalContentStore, sha256 and fsync included,
// next to a bare sha256 of the same bytes. Usage: node bench/write-commit.mjs [MiB] [dir] (after a build).
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalContentStore } from '../dist/local-content-store.js';

const mib = Number(process.argv[2] ?? 256);
const base = process.argv[3] ?? tmpdir();
const chunks = Array.from({ length: 16 }, () => randomFillSync(Buffer.alloc(1 << 20)));
const rate = (ms) => `${((mib * 1.048576) / (ms / 1000)).toFixed(0)} MB/s`;

let t = performance.now();
const hash = createHash('sha256');
for (let i = 0; i < mib; i++) hash.update(chunks[i % chunks.length]);
const expected = `sha256:${hash.digest('hex')}`;
const hashMs = performance.now() - t;

const root = await mkdtemp(join(base, 'berth-bench-'));
try {
  const store = await LocalContentStore.open(root);
  t = performance.now();
  const w = await store.writer({ ref: 'bench', total: mib << 20, expected });
  for (let i = 0; i < mib; i++) await w.write(chunks[i % chunks.length]);
  const writtenMs = performance.now() - t;
  await w.commit(mib << 20, expected);
  const totalMs = performance.now() - t;
  console.log(`sha256 only (node crypto): ${hashMs.toFixed(0)} ms, ${rate(hashMs)}`);
  console.log(`LocalContentStore writes:  ${writtenMs.toFixed(0)} ms, ${rate(writtenMs)}`);
  console.log(`  + commit (fsync, rename): ${totalMs.toFixed(0)} ms, ${rate(totalMs)}`);
} finally {
  await rm(root, { recursive: true, force: true });
}
