import { blobPath, type CachedImage } from '@berth/image-builder';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { megabytesPerSecond, median } from './stats.js';
import { runOk, runTimed } from './timed-command.js';

/** What the machine itself allows, in MB/s (10^6 bytes), to judge the engines' numbers against. */
export interface MachineLimits {
  /** SHA-256 over 1 MiB blocks on one core. */
  readonly sha256MBps: number;
  /** `openssl speed -evp sha256`, or node's crypto where openssl cannot say. */
  readonly sha256Source: 'openssl' | 'node';
  /** dd of zeros with conv=fsync into the engines' filesystem. */
  readonly fsyncWriteMBps: number;
  readonly fsyncWriteBytes: number;
  /** `tar -x` of one uncompressed layer into the engines' filesystem (page cache, no fsync). */
  readonly tarExtractMBps: number;
  readonly tarBytes: number;
  /** Which layer was extracted. */
  readonly tarLayer: string;
  /** Each figure is the median of this many runs (openssl: one 2 s run). */
  readonly runs: number;
}

/** The MB/s openssl speed printed for the 1 MiB block (its numbers are in 1000s of bytes per second). */
export function parseOpensslSpeed(output: string): number | undefined {
  const m = /^sha256\s+([\d.]+)k\s*$/im.exec(output);
  return m ? Number(m[1]) / 1000 : undefined;
}

/** dd's own elapsed seconds, from its last line (`N bytes (…) copied, 0.52 s, 516 MB/s`). */
export function parseDdSeconds(stderr: string): number | undefined {
  const m = /copied, ([\d.,]+) s/.exec(stderr);
  return m ? Number((m[1] as string).replace(',', '.')) : undefined;
}

async function sha256Speed(): Promise<{ mbps: number; source: 'openssl' | 'node' }> {
  const r = await runTimed('openssl', ['speed', '-evp', 'sha256', '-bytes', '1048576', '-seconds', '2'], { timeoutMs: 30_000 }).catch(
    () => undefined,
  );
  const fromOpenssl = r?.code === 0 ? parseOpensslSpeed(r.stdout) : undefined;
  if (fromOpenssl) return { mbps: fromOpenssl, source: 'openssl' };
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  let bytes = 0;
  const started = performance.now();
  while (performance.now() - started < 2000) {
    const h = createHash('sha256');
    for (let i = 0; i < 16; i++) h.update(block);
    h.digest();
    bytes += 16 * block.length;
  }
  return { mbps: megabytesPerSecond(bytes, performance.now() - started), source: 'node' };
}

async function fsyncWrite(dir: string, mib: number): Promise<number> {
  const file = join(dir, 'dd.bin');
  try {
    const r = await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'conv=fsync'], { timeoutMs: 120_000 });
    const seconds = parseDdSeconds(r.stderr) ?? r.ms / 1000;
    return megabytesPerSecond(mib * 1024 * 1024, seconds * 1000);
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * Measures SHA-256, fsync'd writes (`mib` MiB, as large as the ingest being judged) and
 * `tar -x` of the image's largest layer, all in `dir`, which should be on the engines' filesystem.
 */
export async function measureMachineLimits(dir: string, image: CachedImage, opts: { mib: number; runs: number }): Promise<MachineLimits> {
  const sha = await sha256Speed();

  const writes: number[] = [];
  for (let i = 0; i < opts.runs; i++) writes.push(await fsyncWrite(dir, opts.mib));

  const layer = [...image.result.layers].sort((a, b) => b.uncompressedSize - a.uncompressedSize)[0];
  if (!layer) throw new Error(`${image.name} has no layers`);
  const tar = join(dir, 'layer.tar');
  const into = join(dir, 'layer-extract');
  const extracts: number[] = [];
  try {
    await pipeline(createReadStream(blobPath(image.layoutDir, layer.digest)), createGunzip(), createWriteStream(tar));
    for (let i = 0; i < opts.runs; i++) {
      await rm(into, { recursive: true, force: true });
      await mkdir(into);
      const r = await runOk('tar', ['-xf', tar, '-C', into], { timeoutMs: 120_000 });
      extracts.push(megabytesPerSecond(layer.uncompressedSize, r.ms));
    }
  } finally {
    await rm(into, { recursive: true, force: true });
    await rm(tar, { force: true });
  }
  return {
    sha256MBps: sha.mbps,
    sha256Source: sha.source,
    fsyncWriteMBps: median(writes),
    fsyncWriteBytes: opts.mib * 1024 * 1024,
    tarExtractMBps: median(extracts),
    tarBytes: layer.uncompressedSize,
    tarLayer: layer.digest,
    runs: opts.runs,
  };
}
