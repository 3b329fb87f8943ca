import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { describeLayer, type LayerSpec, layerEntries } from './layer-sources.js';
import {
  AnnotationImageName,
  AnnotationRefName,
  type ContainerConfig,
  type Descriptor,
  digestHex,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MediaType,
  tagOf,
} from './oci.js';
import { prepareEntries, tarStream } from './tar-entries.js';

export interface BuildImageOptions {
  /** The OCI image layout directory to write; replaced if it exists. */
  readonly out: string;
  /** Full name with tag, e.g. `localhost/berth-test/busybox:latest`. */
  readonly name: string;
  /** Bottom layer first. */
  readonly layers: readonly LayerSpec[];
  readonly config?: ContainerConfig;
  /** `gzip` (default) or `none` for plain tar layers. */
  readonly compression?: 'gzip' | 'none';
  /** zlib level 0–9 (default 6, zlib's own default). */
  readonly gzipLevel?: number;
  /** Every tar entry's mtime and the config's `created` (default: the epoch). */
  readonly created?: Date;
  readonly architecture?: string;
  readonly os?: string;
  /** Layers built at once (default: the number of CPUs). gzip runs on libuv's thread pool. */
  readonly concurrency?: number;
}

export interface BuiltLayer extends Descriptor {
  /** sha256 of the uncompressed tar, as in the config's rootfs.diff_ids. */
  readonly diffId: string;
  readonly uncompressedSize: number;
}

export interface BuildResult {
  readonly layoutDir: string;
  readonly name: string;
  readonly tag: string;
  /** The manifest's descriptor, as index.json lists it. */
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly BuiltLayer[];
  /** Manifest + config + layers, the bytes a registry would store. */
  readonly totalSize: number;
}

/** Streams one blob into blobs/sha256 under a temporary name, hashing as it writes. */
async function writeBlobStream(
  layoutDir: string,
  source: AsyncIterable<Buffer>,
  gzipLevel: number | undefined,
): Promise<{ digest: string; size: number; diffId: string; uncompressedSize: number }> {
  const dir = join(layoutDir, 'blobs', 'sha256');
  const tmp = join(dir, `.tmp-${randomBytes(8).toString('hex')}`);
  const diff = createHash('sha256');
  const blob = createHash('sha256');
  let uncompressedSize = 0;
  let size = 0;
  try {
    const tap = (hash: Hash, count: (n: number) => void) =>
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const c of chunks) {
          hash.update(c);
          count(c.length);
          yield c;
        }
      };
    const diffTap = tap(diff, (n) => (uncompressedSize += n));
    const blobTap = tap(blob, (n) => (size += n));
    if (gzipLevel === undefined) {
      await pipeline(source, diffTap, createWriteStream(tmp));
      size = uncompressedSize;
    } else {
      await pipeline(source, diffTap, createGzip({ level: gzipLevel }), blobTap, createWriteStream(tmp));
    }
    const diffId = `sha256:${diff.digest('hex')}`;
    const digest = gzipLevel === undefined ? diffId : `sha256:${blob.digest('hex')}`;
    await rename(tmp, join(dir, digestHex(digest)));
    return { digest, size, diffId, uncompressedSize };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes a small JSON blob; its bytes are the canonical JSON.stringify of `value`. */
async function writeJsonBlob(layoutDir: string, mediaType: string, value: unknown): Promise<Descriptor> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  await writeFile(join(layoutDir, 'blobs', 'sha256', digestHex(digest)), bytes);
  return { mediaType, digest, size: bytes.length };
}

/** Runs `fn` over `items` with at most `limit` at once, keeping the order of results. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return results;
}

/**
 * Builds an OCI image layout from local sources. Deterministic: the same options (and the
 * same busybox binary and zlib) give the same digests. Layers are streamed to disk, hashed
 * on the way, never held whole in memory.
 */
export async function buildImage(opts: BuildImageOptions): Promise<BuildResult> {
  if (opts.layers.length === 0) throw new Error('an image needs at least one layer');
  const compression = opts.compression ?? 'gzip';
  const gzipLevel = compression === 'gzip' ? (opts.gzipLevel ?? 6) : undefined;
  if (gzipLevel !== undefined && !(Number.isInteger(gzipLevel) && gzipLevel >= 0 && gzipLevel <= 9)) {
    throw new RangeError(`gzipLevel must be 0–9, not ${gzipLevel}`);
  }
  const created = opts.created ?? new Date(0);
  const createdText = created.toISOString().replace(/\.000Z$/, 'Z');
  const layoutDir = opts.out;
  const tag = tagOf(opts.name);

  await rm(layoutDir, { recursive: true, force: true });
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });

  // Entries are made (and checked) before anything is streamed.
  const prepared = opts.layers.map((spec) => prepareEntries(layerEntries(spec)));
  const layers = await mapLimit(prepared, opts.concurrency ?? availableParallelism(), async (entries) => {
    const w = await writeBlobStream(layoutDir, tarStream(entries, { mtime: created }), gzipLevel);
    const layer: BuiltLayer = {
      mediaType: gzipLevel === undefined ? MediaType.LayerTar : MediaType.LayerTarGzip,
      digest: w.digest,
      size: w.size,
      diffId: w.diffId,
      uncompressedSize: w.uncompressedSize,
    };
    return layer;
  });

  const imageConfig: ImageConfig = {
    created: createdText,
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    config: opts.config ?? {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: opts.layers.map((spec) => ({ created: createdText, created_by: describeLayer(spec) })),
  };
  const config = await writeJsonBlob(layoutDir, MediaType.ImageConfig, imageConfig);
  const manifestDoc: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    config,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const written = await writeJsonBlob(layoutDir, MediaType.ImageManifest, manifestDoc);
  const manifest: Descriptor = {
    ...written,
    annotations: { [AnnotationImageName]: opts.name, [AnnotationRefName]: tag },
  };
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests: [manifest] };
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index));

  return {
    layoutDir,
    name: opts.name,
    tag,
    manifest,
    config,
    layers,
    totalSize: written.size + config.size + layers.reduce((n, l) => n + l.size, 0),
  };
}
