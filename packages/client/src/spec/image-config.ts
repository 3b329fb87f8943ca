import { type Descriptor, type Image, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import type { RequestOptions } from '../client-context.js';
import type { ContentClient } from '../content-client.js';
import { isConfigType, isIndexType, isManifestType } from '../oci/media-types.js';
import { hostPlatform, type OciPlatform, type PlatformMatcher, Platforms } from '../oci/platforms.js';

/** The `config` section of an OCI image config (Docker's field names), what a container starts from. */
export interface ImageRunConfig {
  readonly User?: string;
  readonly Env?: readonly string[] | null;
  readonly Entrypoint?: readonly string[] | null;
  readonly Cmd?: readonly string[] | null;
  readonly WorkingDir?: string;
  readonly Labels?: Readonly<Record<string, string>> | null;
  readonly StopSignal?: string;
  readonly [key: string]: unknown;
}

/** An image resolved to one platform: its manifest, config and the snapshot its layers unpack to. */
export interface ResolvedImage {
  readonly name: string;
  readonly target: Descriptor;
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly platform: OciPlatform;
  readonly runConfig: ImageRunConfig;
  /** rootfs.diff_ids: the digests of the uncompressed layers. */
  readonly diffIds: readonly string[];
  /** The committed snapshot the unpacked layers end in (containerd's identity.ChainID). */
  readonly chainId: string;
}

/** Bytes an image document may take (containerd's client reads at most this much JSON). */
const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

/**
 * OCI's ChainID: the first diff ID, then sha256("<chain> <diff>") for each
 * next layer. containerd names the committed snapshot of an unpacked image so.
 */
export function chainId(diffIds: readonly string[]): string {
  let chain = '';
  for (const diff of diffIds) {
    chain = chain ? `sha256:${createHash('sha256').update(`${chain} ${diff}`).digest('hex')}` : diff;
  }
  return chain;
}

interface ImageDocument {
  manifests?: (Descriptor & { platform?: OciPlatform })[] | null;
  config?: Descriptor | Record<string, unknown> | null;
  layers?: Descriptor[] | null;
  rootfs?: { type?: string; diff_ids?: string[] | null } | null;
  os?: string;
  architecture?: string;
  variant?: string;
}

async function readDocument(content: ContentClient, desc: Descriptor, opts: RequestOptions): Promise<ImageDocument> {
  const bytes = await content.readAll(desc.digest, { ...opts, maxBytes: MAX_DOCUMENT_BYTES });
  try {
    const doc = JSON.parse(bytes.toString('utf8'));
    if (typeof doc !== 'object' || doc === null) throw new Error('not an object');
    return doc as ImageDocument;
  } catch (err) {
    throw new InvalidArgumentError(`${desc.mediaType} ${desc.digest}: malformed JSON: ${(err as Error).message}`);
  }
}

/**
 * Resolve `image` for `platform` (default: what this host runs, preferring
 * its exact platform, as containerd's platforms.Only) down to its config.
 * NotFoundError when content is missing or no manifest matches.
 */
export async function resolveImage(
  content: ContentClient,
  image: Pick<Image, 'name' | 'target'>,
  opts: RequestOptions & { readonly platform?: OciPlatform } = {},
): Promise<ResolvedImage> {
  const wanted = opts.platform ?? hostPlatform();
  const exact = Platforms.strict(wanted);
  const compatible: PlatformMatcher = Platforms.only(wanted);
  let desc: Descriptor & { platform?: OciPlatform } = image.target;
  for (let depth = 0; isIndexType(desc.mediaType); depth++) {
    if (depth > 8) throw new InvalidArgumentError(`${image.name}: indexes nested too deep`);
    const entries = (await readDocument(content, desc, opts)).manifests ?? [];
    const match =
      entries.find((m) => m.platform && exact.match(m.platform)) ??
      entries.find((m) => !m.platform || compatible.match(m.platform));
    if (!match) throw new NotFoundError(`image ${image.name}: no manifest for ${compatible.description}`);
    desc = match;
  }
  if (!isManifestType(desc.mediaType)) throw new InvalidArgumentError(`image ${image.name}: unexpected media type ${desc.mediaType}`);
  const manifest = desc;
  const manifestDoc = await readDocument(content, manifest, opts);
  const config = manifestDoc.config as Descriptor | undefined;
  if (!config?.digest || !isConfigType(config.mediaType)) {
    throw new InvalidArgumentError(`image ${image.name}: manifest ${manifest.digest} has no image config`);
  }
  const configDoc = await readDocument(content, config, opts);
  const diffIds = configDoc.rootfs?.diff_ids ?? [];
  return {
    name: image.name,
    target: image.target,
    manifest: { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size },
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    platform: { os: configDoc.os ?? '', architecture: configDoc.architecture ?? '', ...(configDoc.variant ? { variant: configDoc.variant } : {}) },
    runConfig: (configDoc.config ?? {}) as ImageRunConfig,
    diffIds,
    chainId: chainId(diffIds),
  };
}
