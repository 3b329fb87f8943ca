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
  /** The median `tar -x` in milliseconds (what berth's apply of the same layer is judged against). */
  readonly tarExtractMs: number;
  readonly tarBytes: number;
  /** Which layer was extracted (its compressed digest in the image). */
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

/** An image's largest layer, decompressed into a file: what `tar -x` extracts and berth's differ applies. */
export interface LayerTar {
  readonly path: string;
  /** sha256 of the uncompressed bytes (the layer's diff ID). */
  readonly digest: string;
  readonly bytes: number;
  /** The compressed layer's digest in the image. */
  readonly layer: string;
}

/** Decompresses the largest layer of `image` into `dir`/layer.tar (removed with `dir`). */
export async function prepareLayerTar(dir: string, image: CachedImage): Promise<LayerTar> {
  const layer = [...image.result.layers].sort((a, b) => b.uncompressedSize - a.uncompressedSize)[0];
  if (!layer) throw new Error(`${image.name} has no layers`);
  const path = join(dir, 'layer.tar');
  const hash = createHash('sha256');
  let bytes = 0;
  await pipeline(
    createReadStream(blobPath(image.layoutDir, layer.digest)),
    createGunzip(),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        bytes += chunk.length;
        yield chunk;
      }
    },
    createWriteStream(path),
  );
  const digest = `sha256:${hash.digest('hex')}`;
  if (digest !== layer.diffId || bytes !== layer.uncompressedSize) {
    throw new Error(`${image.name}'s layer ${layer.digest} decompresses to ${digest} (${bytes} bytes), not its diff ID ${layer.diffId}`);
  }
  return { path, digest, bytes, layer: layer.digest };
}

/**
 * Measures SHA-256, fsync'd writes (`mib` MiB, as large as the ingest being judged) and
 * `tar -x` of `layer` (see prepareLayerTar), all in `dir`, which should be on the engines' filesystem.
 */
export async function measureMachineLimits(dir: string, layer: LayerTar, opts: { mib: number; runs: number }): Promise<MachineLimits> {
  const sha = await sha256Speed();

  const writes: number[] = [];
  for (let i = 0; i < opts.runs; i++) writes.push(await fsyncWrite(dir, opts.mib));

  const into = join(dir, 'layer-extract');
  const extracts: number[] = [];
  try {
    for (let i = 0; i < opts.runs; i++) {
      await rm(into, { recursive: true, force: true });
      await mkdir(into);
      extracts.push((await runOk('tar', ['-xf', layer.path, '-C', into], { timeoutMs: 120_000 })).ms);
    }
  } finally {
    await rm(into, { recursive: true, force: true });
  }
  const tarMs = median(extracts);
  return {
    sha256MBps: sha.mbps,
    sha256Source: sha.source,
    fsyncWriteMBps: median(writes),
    fsyncWriteBytes: opts.mib * 1024 * 1024,
    tarExtractMBps: megabytesPerSecond(layer.bytes, tarMs),
    tarExtractMs: tarMs,
    tarBytes: layer.bytes,
    tarLayer: layer.layer,
    runs: opts.runs,
  };
}
