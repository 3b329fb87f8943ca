import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AnnotationImageName,
  AnnotationRefName,
  type Descriptor,
  digestHex,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MediaType,
} from './oci.js';

export interface LayoutImage {
  /** The full name (io.containerd.image.name), or undefined when index.json lacks it. */
  readonly name: string | undefined;
  readonly tag: string | undefined;
  readonly manifestDescriptor: Descriptor;
  readonly manifest: ImageManifest;
  readonly configDescriptor: Descriptor;
  readonly config: ImageConfig;
}

export function blobPath(layoutDir: string, digest: string): string {
  return join(layoutDir, 'blobs', 'sha256', digestHex(digest));
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

/** The images an OCI layout's index.json lists (image manifests only, no nested indexes). */
export async function readImageLayout(layoutDir: string): Promise<LayoutImage[]> {
  const index = await readJson<ImageIndex>(join(layoutDir, 'index.json'));
  const images: LayoutImage[] = [];
  for (const d of index.manifests) {
    if (d.mediaType !== MediaType.ImageManifest) continue;
    const manifest = await readJson<ImageManifest>(blobPath(layoutDir, d.digest));
    const config = await readJson<ImageConfig>(blobPath(layoutDir, manifest.config.digest));
    images.push({
      name: d.annotations?.[AnnotationImageName],
      tag: d.annotations?.[AnnotationRefName],
      manifestDescriptor: d,
      manifest,
      configDescriptor: manifest.config,
      config,
    });
  }
  return images;
}

/** Every file of the layout, relative and sorted; leftovers of an interrupted write are skipped. */
export async function layoutFiles(layoutDir: string): Promise<string[]> {
  const blobs = (await readdir(join(layoutDir, 'blobs', 'sha256'))).filter((f) => !f.startsWith('.'));
  return ['oci-layout', 'index.json', ...blobs.sort().map((b) => `blobs/sha256/${b}`)];
}
