import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readImageLayout } from './image-layout.js';
import { DEFAULT_BUSYBOX } from './layer-sources.js';
import { cachedPreset, cacheKey, defaultCacheRoot, PRESETS, presetOptions } from './presets.js';
import { runCommand } from './processes.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

describe('presets', { skip: !existsSync(DEFAULT_BUSYBOX) && `${DEFAULT_BUSYBOX} missing (busybox-static)` }, () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-presets-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('unknown presets are refused with the known names', () => {
    assert.throws(() => presetOptions('huge'), /unknown preset huge \(known: small, five-layer-137m\)/);
  });

  test('the cache key follows the options', async () => {
    const key = await cacheKey(PRESETS.small);
    assert.equal(await cacheKey(PRESETS.small), key);
    assert.notEqual(await cacheKey({ ...PRESETS.small, gzipLevel: 9 }), key);
    assert.notEqual(await cacheKey({ ...PRESETS.small, config: { Cmd: ['/bin/true'] } }), key);
  });

  test('the default cache is the workspace node_modules/.cache/berth-images', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    assert.equal(defaultCacheRoot(), join(root, 'node_modules', '.cache', 'berth-images'));
  });

  test('cachedPreset builds once, then returns the same image; a stale key rebuilds', async () => {
    const cacheRoot = join(dir, 'cache');
    const first = await cachedPreset('small', { cacheRoot, ociArchive: true });
    assert.equal(first.hit, false);
    assert.equal(first.layoutDir, join(cacheRoot, 'small', 'layout'));
    assert.ok(first.ociArchive && existsSync(first.ociArchive));
    assert.equal(first.dockerArchive, undefined);
    const second = await cachedPreset('small', { cacheRoot, dockerArchive: true });
    assert.equal(second.hit, true);
    assert.deepEqual(second.result, first.result);
    assert.ok(second.dockerArchive && existsSync(second.dockerArchive));
    const [image] = await readImageLayout(second.layoutDir);
    assert.equal(image?.manifestDescriptor.digest, first.result.manifest.digest);

    await writeFile(join(cacheRoot, 'small', 'key'), 'stale');
    const third = await cachedPreset('small', { cacheRoot });
    assert.equal(third.hit, false);
    assert.equal(third.result.manifest.digest, first.result.manifest.digest);
    assert.equal(await readFile(join(cacheRoot, 'small', 'key'), 'utf8'), await cacheKey(PRESETS.small));
  });

  test('concurrent cold builds of one preset agree', async () => {
    const cacheRoot = join(dir, 'race');
    const [a, b] = await Promise.all([cachedPreset('small', { cacheRoot }), cachedPreset('small', { cacheRoot })]);
    assert.equal(a.result.manifest.digest, b.result.manifest.digest);
    assert.equal((await readImageLayout(a.layoutDir))[0]?.manifestDescriptor.digest, a.result.manifest.digest);
  });

  test('five-layer-137m: busybox + 4 random layers, ≈137 MB compressed (default cache)', async () => {
    const big = await cachedPreset('five-layer-137m');
    const { layers, totalSize, name } = big.result;
    assert.equal(name, 'localhost/berth-test/big:latest');
    assert.equal(layers.length, 5);
    assert.ok(Math.abs(totalSize - 137e6) < 1e6, `total ${totalSize}`);
    for (const l of layers.slice(1)) assert.ok(l.size > 34e6 && l.size < 34.1e6, `layer ${l.size}`);
    const again = await cachedPreset('five-layer-137m');
    assert.equal(again.hit, true);
    assert.equal(again.result.manifest.digest, big.result.manifest.digest);
  });

  test('berth-build-image --preset small writes the layout and both archives', async () => {
    const out = join(dir, 'cli');
    const r = await runCommand(process.execPath, [
      MAIN,
      '--preset',
      'small',
      '--out',
      join(out, 'layout'),
      '--oci-archive',
      join(out, 'oci.tar'),
      '--docker-archive',
      join(out, 'docker.tar'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.name, 'localhost/berth-test/busybox:latest');
    assert.match(summary.manifest, /^sha256:[0-9a-f]{64}$/);
    for (const f of ['layout/index.json', 'oci.tar', 'docker.tar']) assert.ok(existsSync(join(out, f)), f);
    const bad = await runCommand(process.execPath, [MAIN, '--preset', 'nope', '--out', join(out, 'x')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown preset nope/);
    const usage = await runCommand(process.execPath, [MAIN]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: berth-build-image/);
  });
});
