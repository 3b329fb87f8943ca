import { type Descriptor, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import type { RequestOptions } from '../client-context.js';
import type { ContentClient } from '../content-client.js';
import { MAX_JSON_BYTES } from './archive-importer.js';
import { isConfigType, isIndexType, isManifestType } from './media-types.js';
import { normalizePlatform, type OciPlatform, type PlatformMatcher } from './platforms.js';

interface Doc {
  manifests?: (Descriptor & { platform?: OciPlatform })[] | null;
  config?: Descriptor;
  layers?: Descriptor[] | null;
  os?: string;
  architecture?: string;
}

async function document(content: ContentClient, desc: Descriptor, opts: RequestOptions): Promise<Doc> {
  const bytes = await content.readAll(desc.digest, { ...opts, maxBytes: MAX_JSON_BYTES });
  try {
    const doc = JSON.parse(bytes.toString('utf8'));
    if (typeof doc !== 'object' || doc === null) throw new Error('not an object');
    return doc as Doc;
  } catch (err) {
    throw new InvalidArgumentError(`${desc.mediaType} ${desc.digest}: malformed JSON: ${(err as Error).message}`);
  }
}

/**
 * Bytes an image takes for one platform: its index (if any), the manifest
 * the platform resolves to, the config and the layers (containerd's
 * Image.Size). NotFoundError when content is missing or no manifest matches.
 */
export async function imageSize(content: ContentClient, target: Descriptor, matcher: PlatformMatcher, opts: RequestOptions = {}): Promise<number> {
  let total = 0;
  const walk = async (desc: Descriptor & { platform?: OciPlatform }, depth: number): Promise<void> => {
    if (depth > 8) throw new InvalidArgumentError(`${desc.digest}: indexes nested too deep`);
    total += desc.size;
    if (isIndexType(desc.mediaType)) {
      const doc = await document(content, desc, opts);
      const match = (doc.manifests ?? []).find((m) => !m.platform || matcher.match(m.platform));
      if (!match) throw new NotFoundError(`no manifest for ${matcher.description} in ${desc.digest}`);
      await walk(match, depth + 1);
    } else if (isManifestType(desc.mediaType)) {
      const doc = await document(content, desc, opts);
      for (const child of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])]) total += child.size;
    }
  };
  await walk(target, 0);
  return total;
}

/**
 * The platforms an image offers: those its index entries name, or its
 * config's os/architecture for a single manifest (containerd's images.Platforms).
 */
export async function imagePlatforms(content: ContentClient, target: Descriptor, opts: RequestOptions = {}): Promise<OciPlatform[]> {
  const out: OciPlatform[] = [];
  const walk = async (desc: Descriptor & { platform?: OciPlatform }, depth: number): Promise<void> => {
    if (desc.platform) {
      out.push(desc.platform);
      return;
    }
    if (depth > 8) throw new InvalidArgumentError(`${desc.digest}: indexes nested too deep`);
    if (isIndexType(desc.mediaType)) {
      for (const m of (await document(content, desc, opts)).manifests ?? []) await walk(m, depth + 1);
    } else if (isManifestType(desc.mediaType)) {
      const doc = await document(content, desc, opts);
      if (doc.config) await walk(doc.config, depth + 1);
    } else if (isConfigType(desc.mediaType)) {
      const doc = await document(content, desc, opts);
      out.push(normalizePlatform({ os: doc.os ?? '', architecture: doc.architecture ?? '' }));
    }
  };
  await walk(target, 0);
  return out;
}
