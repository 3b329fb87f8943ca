import { type Descriptor, InvalidArgumentError, NotImplementedError } from '@berth/plugin-api';
import { isConfig, isIndex, isLayer, isManifest, MediaType } from './media-types.js';
import type { Platform } from './platform.js';

/** A descriptor as manifests and indexes carry it: maybe a platform, maybe annotations. */
export interface ManifestDescriptor extends Descriptor {
  readonly platform?: Platform & { readonly 'os.version'?: string; readonly 'os.features'?: readonly string[] };
  readonly urls?: readonly string[];
}

export interface ImageIndex {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly manifests: readonly ManifestDescriptor[];
}

export interface ImageManifest {
  readonly schemaVersion: number;
  readonly mediaType?: string;
  readonly config: ManifestDescriptor;
  readonly layers: readonly ManifestDescriptor[];
}

/** The descriptors a manifest or index points at, in document order (config first, then layers). */
export function childrenOf(desc: Descriptor, data: Uint8Array): ManifestDescriptor[] {
  if (desc.mediaType === MediaType.dockerSchema1Manifest) {
    throw new NotImplementedError(`${desc.digest}: Docker schema 1 manifests are not supported`);
  }
  let doc: Partial<ImageIndex & ImageManifest>;
  try {
    doc = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`${desc.mediaType} ${desc.digest}: not JSON: ${(err as Error).message}`);
  }
  if (isIndex(desc.mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new InvalidArgumentError(`index ${desc.digest}: no manifests`);
    return doc.manifests.map(checkDescriptor(desc));
  }
  if (isManifest(desc.mediaType)) {
    if (!doc.config || !Array.isArray(doc.layers)) throw new InvalidArgumentError(`manifest ${desc.digest}: no config or layers`);
    return [doc.config, ...doc.layers].map(checkDescriptor(desc));
  }
  return [];
}

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

function checkDescriptor(parent: Descriptor): (d: ManifestDescriptor) => ManifestDescriptor {
  return (d) => {
    if (!d || typeof d.mediaType !== 'string' || typeof d.digest !== 'string' || !DIGEST.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
      throw new InvalidArgumentError(`${parent.digest}: bad descriptor ${JSON.stringify(d)}`);
    }
    return d;
  };
}

/**
 * The `containerd.io/gc.ref.content.*` labels a parent carries for its
 * children, exactly as containerd's images.SetChildrenMappedLabels with
 * ChildGCLabels writes them: `config`, `m.<i>`, `l.<i>`, else `<i>`; the
 * counter is per key, and a key not ending in `.` gets its number only from
 * the second use on.
 */
export function childGcLabels(children: readonly Descriptor[]): Record<string, string> {
  const labels: Record<string, string> = {};
  const counts = new Map<string, number>();
  for (const ch of children) {
    const mt = ch.mediaType;
    const base = isConfig(mt)
      ? 'containerd.io/gc.ref.content.config'
      : isManifest(mt)
        ? 'containerd.io/gc.ref.content.m.'
        : isLayer(mt)
          ? 'containerd.io/gc.ref.content.l.'
          : 'containerd.io/gc.ref.content.';
    const idx = counts.get(base) ?? 0;
    counts.set(base, idx + 1);
    const key = idx > 0 || base.endsWith('.') ? `${base}${idx}` : base;
    labels[key] = ch.digest;
  }
  return labels;
}

export const DISTRIBUTION_SOURCE_PREFIX = 'containerd.io/distribution.source.';

/**
 * containerd's appendDistributionSourceLabel: the repositories a blob is
 * known in, sorted, without duplicates, comma-separated.
 */
export function appendDistributionSource(existing: string | undefined, repository: string): string {
  const repos = new Set((existing ? existing.split(',') : []).filter(Boolean));
  repos.add(repository);
  return [...repos].sort().join(',');
}
