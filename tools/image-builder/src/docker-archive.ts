import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { blobPath, readImageLayout } from './image-layout.js';
import { digestHex, MediaType } from './oci.js';
import { writeTarFile } from './oci-archive.js';
import { fileEntry, type TarEntry } from './tar-entries.js';

export interface DockerArchiveOptions {
  /** RepoTags for manifest.json (default: the layout's io.containerd.image.name). */
  readonly repoTags?: readonly string[];
}

function uncompressed(path: string, gzipped: boolean): AsyncIterable<Buffer> {
  const file = createReadStream(path);
  return gzipped ? file.pipe(createGunzip()) : file;
}

async function uncompressedSize(path: string, gzipped: boolean): Promise<number> {
  let size = 0;
  for await (const c of uncompressed(path, gzipped)) size += (c as Buffer).length;
  return size;
}

/**
 * `docker save`'s format, from an OCI layout with one image: manifest.json (Config, RepoTags,
 * Layers), `<config hex>.json`, and each layer uncompressed as `<diff id hex>/layer.tar`.
 * `docker load` and `ctr images import` read it. Each layer is checked against its diff id.
 */
export async function writeDockerArchive(
  layoutDir: string,
  tarPath: string,
  opts: DockerArchiveOptions = {},
): Promise<void> {
  const images = await readImageLayout(layoutDir);
  const image = images[0];
  if (!image || images.length !== 1) throw new Error(`${layoutDir}: expected one image, found ${images.length}`);
  const repoTags = opts.repoTags ?? (image.name ? [image.name] : []);
  const diffIds = image.config.rootfs.diff_ids;
  if (diffIds.length !== image.manifest.layers.length) throw new Error('config diff_ids do not match the layers');

  const configName = `${digestHex(image.configDescriptor.digest)}.json`;
  const entries: TarEntry[] = [];
  const layerNames: string[] = [];
  for (const [i, layer] of image.manifest.layers.entries()) {
    const diffId = diffIds[i] as string;
    const name = `${digestHex(diffId)}/layer.tar`;
    layerNames.push(name);
    if (entries.some((e) => e.path === name)) continue;
    const gzipped = layer.mediaType === MediaType.LayerTarGzip;
    if (!gzipped && layer.mediaType !== MediaType.LayerTar) throw new Error(`unsupported layer ${layer.mediaType}`);
    const path = blobPath(layoutDir, layer.digest);
    // The tar header needs the size first: a gzipped layer is read through once to count it.
    const size = gzipped ? await uncompressedSize(path, true) : layer.size;
    entries.push({
      type: 'file',
      path: name,
      size,
      content: async function* () {
        const hash = createHash('sha256');
        for await (const c of uncompressed(path, gzipped)) {
          hash.update(c as Buffer);
          yield c as Buffer;
        }
        if (`sha256:${hash.digest('hex')}` !== diffId) throw new Error(`layer ${layer.digest} does not match ${diffId}`);
      },
    });
  }
  entries.push({
    type: 'file',
    path: configName,
    size: image.configDescriptor.size,
    content: () => createReadStream(blobPath(layoutDir, image.configDescriptor.digest)),
  });
  entries.push(fileEntry('manifest.json', JSON.stringify([{ Config: configName, RepoTags: repoTags, Layers: layerNames }])));
  await writeTarFile(entries, tarPath);
}
