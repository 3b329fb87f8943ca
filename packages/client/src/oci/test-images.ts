import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { MediaType } from './media-types.js';
import { TarWriter } from './tar.js';

/*
 * Tiny synthetic images and archives for tests: no registry, no busybox, a
 * few hundred bytes each. Each helper returns the bytes and digests so tests
 * can compare what the store ends up with.
 */

export const sha256 = (data: Uint8Array | string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
export const hex = (digest: string) => digest.slice(digest.indexOf(':') + 1);

export interface Blob {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly bytes: Buffer;
}

export function blob(mediaType: string, bytes: Buffer | string): Blob {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  return { mediaType, digest: sha256(b), size: b.length, bytes: b };
}

export const descriptor = (b: Blob, extra: Record<string, unknown> = {}) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra });

/** Collects what is written to it. */
export class BufferSink extends Writable {
  private readonly parts: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.parts.push(chunk);
    cb();
  }
  get buffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface TarFile {
  readonly name: string;
  readonly data?: Buffer | string;
  readonly type?: 'file' | 'directory' | 'symlink';
  /** For a symlink. */
  readonly target?: string;
}

/** A tar archive of the given files, in order (names taken as they are, hostile ones included). */
export async function tarOf(files: readonly TarFile[]): Promise<Buffer> {
  const sink = new BufferSink();
  const tar = new TarWriter(sink);
  for (const f of files) {
    if (f.type === 'directory') await tar.directory(f.name);
    else if (f.type === 'symlink') await tar.symlink(f.name, f.target ?? '');
    else {
      const data = Buffer.isBuffer(f.data) ? f.data : Buffer.from(f.data ?? '');
      await tar.file(f.name, data.length, data);
    }
  }
  await tar.finish();
  return sink.buffer;
}

/** One single-platform image: a gzipped layer holding one file, a config, a manifest. */
export interface TestImage {
  readonly layer: Blob;
  /** The layer uncompressed (its diff ID is the digest). */
  readonly diff: Blob;
  readonly config: Blob;
  readonly manifest: Blob;
  readonly platform: { architecture: string; os: string; variant?: string };
}

export async function makeImage(
  opts: { content?: string; architecture?: string; os?: string; variant?: string; docker?: boolean; gzip?: boolean } = {},
): Promise<TestImage> {
  const platform = {
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    ...(opts.variant ? { variant: opts.variant } : {}),
  };
  const layerTar = await tarOf([{ name: 'hello.txt', data: opts.content ?? 'hello from berth\n' }]);
  const gzip = opts.gzip ?? true;
  const diff = blob(MediaType.ociLayer, layerTar);
  const layerType = opts.docker
    ? gzip
      ? MediaType.dockerLayerGzip
      : MediaType.dockerLayer
    : gzip
      ? MediaType.ociLayerGzip
      : MediaType.ociLayer;
  const layer = blob(layerType, gzip ? gzipSync(layerTar) : layerTar);
  const config = blob(
    opts.docker ? MediaType.dockerConfig : MediaType.ociConfig,
    JSON.stringify({
      ...platform,
      config: { Cmd: ['/hello'] },
      rootfs: { type: 'layers', diff_ids: [diff.digest] },
    }),
  );
  const manifest = blob(
    opts.docker ? MediaType.dockerManifest : MediaType.ociManifest,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: opts.docker ? MediaType.dockerManifest : MediaType.ociManifest,
      config: descriptor(config),
      layers: [descriptor(layer)],
    }),
  );
  return { layer, diff, config, manifest, platform };
}

/** An index over images of several platforms. */
export function makeIndex(images: readonly TestImage[]): Blob {
  return blob(
    MediaType.ociIndex,
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: images.map((i) => descriptor(i.manifest, { platform: i.platform })),
    }),
  );
}

export const blobFile = (b: Blob): TarFile => ({ name: `blobs/sha256/${hex(b.digest)}`, data: b.bytes });
export const imageFiles = (i: TestImage): TarFile[] => [blobFile(i.manifest), blobFile(i.config), blobFile(i.layer)];

/** index.json naming `targets` (descriptor + image name), as ctr's export writes it. */
export function indexJsonFile(targets: readonly { blob: Blob; name?: string; refName?: string }[]): TarFile {
  return {
    name: 'index.json',
    data: JSON.stringify({
      schemaVersion: 2,
      manifests: targets.map((t) =>
        descriptor(t.blob, {
          ...(t.name || t.refName
            ? {
                annotations: {
                  ...(t.name ? { 'io.containerd.image.name': t.name } : {}),
                  'org.opencontainers.image.ref.name': t.refName ?? t.name?.split(':').pop() ?? '',
                },
              }
            : {}),
        }),
      ),
    }),
  };
}

export const OCI_LAYOUT: TarFile = { name: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' };

/** An OCI layout archive of one image named `name`. */
export async function ociArchive(image: TestImage, name: string): Promise<Buffer> {
  return tarOf([OCI_LAYOUT, ...imageFiles(image), indexJsonFile([{ blob: image.manifest, name }])]);
}

/**
 * A `docker save` archive (v1.2: manifest.json, `<config hex>.json`,
 * `<id>/layer.tar`, legacy `<id>/json` and `repositories`) of `image`.
 */
export async function dockerArchive(image: TestImage, repoTags: readonly string[]): Promise<Buffer> {
  const id = hex(sha256(`layer:${image.layer.digest}`));
  return tarOf([
    { name: `${id}/`, type: 'directory' },
    { name: `${id}/VERSION`, data: '1.0' },
    { name: `${id}/json`, data: '{}' },
    { name: `${id}/layer.tar`, data: image.layer.bytes },
    { name: `${hex(image.config.digest)}.json`, data: image.config.bytes },
    {
      name: 'manifest.json',
      data: JSON.stringify([{ Config: `${hex(image.config.digest)}.json`, RepoTags: repoTags, Layers: [`${id}/layer.tar`] }]),
    },
    { name: 'repositories', data: '{}' },
  ]);
}
