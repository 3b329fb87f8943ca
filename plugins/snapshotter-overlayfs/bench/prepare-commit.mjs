#!/usr/bin/env node
// Time prepare + commit of empty layers (each on the last, as an unpack does) and, for a 128-layer chain,
// view + mount + read the bottom file + unmount. Usage (root, after a build): node bench/prepare-commit.mjs [layers] [dir]
import { mountAll, unmountAll } from '@berth/sys';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OverlaySnapshotter } from '../dist/index.js';

const layers = Number(process.argv[2] ?? 128);
const base = await mkdtemp(join(process.argv[3] ?? tmpdir(), 'berth-bench-'));
const root = join(base, 'var/lib/berth/io.containerd.snapshotter.v1.overlayfs');
const linkDir = await mkdtemp('/tmp/bo-');
const s = await OverlaySnapshotter.open(root, { linkDir });
try {
  let parent;
  let t = performance.now();
  for (let i = 0; i < layers; i++) {
    await s.prepare(`l${i}-a`, parent);
    await s.commit(`l${i}`, `l${i}-a`);
    parent = `l${i}`;
  }
  const perLayer = (performance.now() - t) / layers;
  await writeFile(join(root, 'snapshots', '1', 'fs', 'bottom'), 'bottom\n');
  const target = await mkdtemp(join(base, 'target-'));
  const runs = [];
  for (let r = 0; r < 5; r++) {
    t = performance.now();
    const mounts = await s.view(`v${r}`, parent);
    mountAll(mounts, target);
    const text = await readFile(join(target, 'bottom'), 'utf8');
    unmountAll(target);
    runs.push(performance.now() - t);
    if (text !== 'bottom\n') throw new Error('bottom file not visible');
  }
  const [m] = await s.mounts('v0');
  console.log(`overlayfs: prepare+commit of an empty layer ${perLayer.toFixed(2)} ms (mean of ${layers}, each on the last)`);
  console.log(`overlayfs: ${layers}-layer view+mount+read bottom+unmount ${Math.min(...runs).toFixed(2)} ms best, ${(runs.reduce((a, b) => a + b) / runs.length).toFixed(2)} ms mean of ${runs.length}; options ${m.options.join(',').length} bytes`);
} finally {
  await s.close();
  await rm(base, { recursive: true, force: true });
  await rm(linkDir, { recursive: true, force: true });
}
