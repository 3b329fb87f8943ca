#!/usr/bin/env node
// Time prepare + commit of empty layers (each on the last, as an unpack does) and, for the chain's top,
// view + mount + read the bottom file + unmount. Usage (root, after a build): node bench/prepare-commit.mjs [layers] [dir]
import { mountAll, unmountAll } from '@berth/sys';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeSnapshotter } from '../dist/index.js';

const layers = Number(process.argv[2] ?? 128);
const base = await mkdtemp(join(process.argv[3] ?? tmpdir(), 'berth-bench-'));
const s = await NativeSnapshotter.open(join(base, 'root'));
try {
  let parent;
  let t = performance.now();
  for (let i = 0; i < layers; i++) {
    const [m] = await s.prepare(`l${i}-a`, parent);
    if (i === 0) await writeFile(join(m.source, 'bottom'), 'bottom\n');
    await s.commit(`l${i}`, `l${i}-a`);
    parent = `l${i}`;
  }
  const perLayer = (performance.now() - t) / layers;
  const target = await mkdtemp(join(base, 'target-'));
  const runs = [];
  for (let r = 0; r < 5; r++) {
    t = performance.now();
    mountAll(await s.view(`v${r}`, parent), target);
    const text = await readFile(join(target, 'bottom'), 'utf8');
    unmountAll(target);
    runs.push(performance.now() - t);
    if (text !== 'bottom\n') throw new Error('bottom file not visible');
  }
  console.log(`native: prepare+commit of an (almost) empty layer ${perLayer.toFixed(2)} ms (mean of ${layers}, each on the last: one cp -a each)`);
  console.log(`native: ${layers}-layer view+mount+read+unmount ${Math.min(...runs).toFixed(2)} ms best, ${(runs.reduce((a, b) => a + b) / runs.length).toFixed(2)} ms mean of ${runs.length}`);
} finally {
  await s.close();
  await rm(base, { recursive: true, force: true });
}
