import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { Descriptor } from '@berth/plugin-api';
import { MediaType } from './media-types.js';
import type { Platform } from './platform.js';
import { RegistryClient } from './registry-client.js';

/*
 * Test images built on the spot: tar layers gzipped, an OCI config and
 * manifest (an index for several platforms), written as an OCI layout that
 * skopeo pushes to a local registry. For tests only.
 */

const run = promisify(execFile);

export interface TestFile {
  readonly name: string;
  readonly data: Buffer | string;
}

/** A ustar archive of regular files (enough for layers that only need to be bytes with a digest). */
export function tarOf(files: readonly TestFile[]): Buffer {
  const blocks: Buffer[] = [];
  for (const f of files) {
    const data = typeof f.data === 'string' ? Buffer.from(f.data) : f.data;
    const h = Buffer.alloc(512);
    h.write(f.name, 0, 100);
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const digestOf = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export interface BuiltManifest {
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly platform: Platform;
}

export interface BuiltImage {
  /** The OCI layout folder. */
  readonly dir: string;
  /** What index.json names: the manifest, or the index when there are several platforms. */
  readonly target: Descriptor;
  readonly manifests: readonly BuiltManifest[];
  /** Every blob by digest. */
  readonly blobs: ReadonlyMap<string, Buffer>;
}

export interface ImageSpec {
  readonly platforms?: readonly Platform[];
  /** Layers per platform; each a list of files. Default: one small layer. */
  readonly layers?: readonly (readonly TestFile[])[];
  /** Add this many bytes of random (incompressible) data in one extra layer per platform. */
  readonly randomBytes?: number;
  /** Split `randomBytes` over this many layers (default 1). */
  readonly randomLayers?: number;
  /** Docker schema 2 media types instead of OCI's. */
  readonly docker?: boolean;
}

/** Build an image as an OCI layout under `dir` (tag `latest`). */
export function buildImage(dir: string, spec: ImageSpec = {}): BuiltImage {
  const blobs = new Map<string, Buffer>();
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (mediaType: string, data: Buffer): Descriptor => {
    const digest = digestOf(data);
    blobs.set(digest, data);
    writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  };
  const mt = spec.docker
    ? { manifest: MediaType.dockerManifest, config: MediaType.dockerConfig, layer: MediaType.dockerLayerGzip, index: MediaType.dockerManifestList }
    : { manifest: MediaType.ociManifest, config: MediaType.ociConfig, layer: MediaType.ociLayerGzip, index: MediaType.ociIndex };
  const platforms = spec.platforms ?? [{ os: 'linux', architecture: 'amd64' }];
  const manifests: BuiltManifest[] = [];
  for (const platform of platforms) {
    const tars = (spec.layers ?? [[{ name: 'hello.txt', data: `hello from ${platform.architecture}\n` }]]).map((files) => tarOf(files));
    const n = spec.randomLayers ?? 1;
    if (spec.randomBytes) {
      for (let i = 0; i < n; i++) tars.push(tarOf([{ name: `random-${i}.bin`, data: randomBytes(Math.floor(spec.randomBytes / n)) }]));
    }
    const layers = tars.map((t) => put(mt.layer, gzipSync(t, { level: 1 })));
    const config = put(
      mt.config,
      Buffer.from(
        JSON.stringify({
          architecture: platform.architecture,
          os: platform.os,
          ...(platform.variant ? { variant: platform.variant } : {}),
          config: { Cmd: ['/bin/sh'] },
          rootfs: { type: 'layers', diff_ids: tars.map((t) => digestOf(t)) },
        }),
      ),
    );
    const manifest = put(mt.manifest, Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: mt.manifest, config, layers })));
    manifests.push({ manifest, config, layers, platform });
  }
  const single = manifests.length === 1 ? manifests[0] : undefined;
  const target = single
    ? single.manifest
    : put(
        mt.index,
        Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: mt.index,
            manifests: manifests.map((m) => ({ ...m.manifest, platform: m.platform })),
          }),
        ),
      );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ ...target, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
  );
  return { dir, target, manifests, blobs };
}

/**
 * Push with berth's own RegistryClient (plain HTTP): for Docker media types,
 * which skopeo does not read from an OCI layout.
 */
export async function pushBuilt(image: BuiltImage, host: string, repository: string, tag: string): Promise<void> {
  const client = new RegistryClient(host, { plainHttp: true });
  try {
    for (const m of image.manifests) {
      for (const b of [m.config, ...m.layers]) {
        if (!(await client.hasBlob(repository, b.digest, { push: true }))) {
          await client.pushBlob(repository, b, (offset) => Readable.from([(image.blobs.get(b.digest) as Buffer).subarray(offset)]));
        }
      }
      const single = image.manifests.length === 1;
      await client.pushManifest(repository, single ? tag : m.manifest.digest, m.manifest, image.blobs.get(m.manifest.digest) as Buffer);
    }
    if (image.manifests.length > 1) await client.pushManifest(repository, tag, image.target, image.blobs.get(image.target.digest) as Buffer);
  } finally {
    client.close();
  }
}

/** `skopeo copy` the layout to `docker://host/repo:tag` over plain HTTP (or TLS without verification). */
export async function skopeoPush(image: BuiltImage, dest: string, opts: { creds?: string } = {}): Promise<void> {
  await run(
    'skopeo',
    [
      'copy',
      '--quiet',
      '--all',
      '--preserve-digests',
      '--dest-tls-verify=false',
      ...(opts.creds ? ['--dest-creds', opts.creds] : []),
      `oci:${image.dir}:latest`,
      `docker://${dest}`,
    ],
    { timeout: 120_000 },
  );
}

/** `skopeo inspect --raw`'s digest of what `ref` names. */
export async function skopeoDigest(ref: string, opts: { creds?: string } = {}): Promise<string> {
  const { stdout } = await run(
    'skopeo',
    ['inspect', '--raw', '--tls-verify=false', ...(opts.creds ? ['--creds', opts.creds] : []), `docker://${ref}`],
    { timeout: 60_000, encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
  );
  return digestOf(stdout as Buffer);
}
