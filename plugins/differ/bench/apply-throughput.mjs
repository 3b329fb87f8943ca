#!/usr/bin/env node
// Apply throughput: one uncompressed ~100 MB layer (many files of mixed sizes, built with tar-stream)
// through WalkingDiffer.apply onto a plain directory, next to GNU `tar -xf` of the same file.
// Needs root (owners are set). Usage: node bench/apply-throughput.mjs [MB] [runs] [dir] (after a build).
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { WalkingDiffer } from '../dist/walking-differ.js';

const targetMB = Number(process.argv[2] ?? 100);
const runs = Number(process.argv[3] ?? 3);
const base = await mkdtemp(join(process.argv[4] ?? tmpdir(), 'berth-differ-bench-'));

// A seeded size mix: 85% small (0.5-8 KiB), 14.5% medium (16-128 KiB), 0.5% large (1-4 MiB).
let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pool = randomFillSync(Buffer.alloc(16 << 20));
const slice = (size) => {
  const off = Math.floor(rand() * (pool.length - size));
  return pool.subarray(off, off + size);
};

async function buildLayer(path) {
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(path));
  const entry = (header, data) => new Promise((resolve, reject) => pack.entry(header, data, (err) => (err ? reject(err) : resolve())));
  let bytes = 0;
  let files = 0;
  let dirs = 0;
  const mtime = new Date(1_600_000_000_000);
  for (let d = 0; bytes < targetMB * 1e6; d++) {
    const dir = `usr/share/pkg${Math.floor(d / 20)}/d${d}`;
    await entry({ name: `${dir}/`, type: 'directory', mode: 0o755, mtime });
    dirs++;
    for (let i = 0; i < 20 && bytes < targetMB * 1e6; i++) {
      const r = rand();
      const size = r < 0.85 ? 512 + Math.floor(rand() * 7680) : r < 0.995 ? 16384 + Math.floor(rand() * 114688) : (1 << 20) + Math.floor(rand() * (3 << 20));
      await entry({ name: `${dir}/f${i}`, mode: 0o644, uid: 1000, gid: 1000, mtime }, slice(size));
      bytes += size;
      files++;
      if (i % 10 === 0) await entry({ name: `${dir}/l${i}`, type: 'symlink', linkname: `f${i}`, mtime });
    }
  }
  pack.finalize();
  await done;
  return { files, dirs, bytes };
}

function timeTar(layer, out) {
  const t = performance.now();
  const r = spawnSync('tar', ['-xf', layer, '-C', out]);
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
  return performance.now() - t;
}

// One differ for every run, as the daemon keeps one (its hash worker starts once).
const differ = new WalkingDiffer(process.env.BENCH_INLINE_HASH ? { hashInWorkerFrom: Infinity } : {});

async function timeBerth(layer, out) {
  const source = {
    mediaType: 'application/vnd.oci.image.layer.v1.tar',
    digest: '',
    size: statSync(layer).size,
    open: () => createReadStream(layer, { highWaterMark: 256 * 1024 }),
  };
  const t = performance.now();
  await differ.apply(source, [{ type: 'bind', source: out, options: ['rbind'] }]);
  return performance.now() - t;
}

try {
  const layer = join(base, 'layer.tar');
  const stats = await buildLayer(layer);
  const size = statSync(layer).size;
  console.log(`layer: ${(size / 1e6).toFixed(1)} MB, ${stats.files} files, ${stats.dirs} dirs, ${(stats.bytes / 1e6).toFixed(1)} MB of file data`);
  const results = { tar: [], berth: [] };
  for (let i = 0; i < runs; i++) {
    for (const [name, fn] of [
      ['tar', timeTar],
      ['berth', timeBerth],
    ]) {
      const out = join(base, `${name}-${i}`);
      mkdirSync(out);
      spawnSync('sync');
      results[name].push(await fn(layer, out));
      // Both must have extracted everything: count regular files.
      const files = Number(spawnSync('sh', ['-c', `find ${out} -type f | wc -l`]).stdout);
      if (files !== stats.files) throw new Error(`${name} extracted ${files} of ${stats.files} files`);
      rmSync(out, { recursive: true, force: true });
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rate = (ms) => `${(size / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  for (const [name, ms] of Object.entries(results)) {
    console.log(`${name.padEnd(6)} median ${median(ms).toFixed(0)} ms (${rate(median(ms))}); runs: ${ms.map((x) => x.toFixed(0)).join(', ')} ms`);
  }
  console.log(`berth / tar time: ${(median(results.berth) / median(results.tar)).toFixed(2)}x`);
} finally {
  await differ.close();
  rmSync(base, { recursive: true, force: true });
}
