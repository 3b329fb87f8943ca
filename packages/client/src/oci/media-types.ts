import type { Descriptor } from '@berth/plugin-api';

/** Media types of OCI and Docker image documents, as containerd's `images` package names them. */
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeign: 'application/vnd.docker.image.rootfs.foreign.diff.tar',
  dockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  containerdCheckpoint: 'application/vnd.containerd.container.criu.checkpoint.criu.tar',
  containerdCheckpointConfig: 'application/vnd.containerd.container.checkpoint.config.v1+proto',
} as const;

/** Annotations containerd reads and writes on index entries. */
export const Annotation = {
  imageName: 'io.containerd.image.name',
  refName: 'org.opencontainers.image.ref.name',
} as const;

/** GC labels by which a parent blob keeps its children (containerd's images.ChildGCLabels). */
export const GcRef = {
  config: 'containerd.io/gc.ref.content.config',
  manifestPrefix: 'containerd.io/gc.ref.content.m.',
  layerPrefix: 'containerd.io/gc.ref.content.l.',
  otherPrefix: 'containerd.io/gc.ref.content.',
} as const;

export const isIndexType = (mt: string): boolean => mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
export const isManifestType = (mt: string): boolean => mt === MediaType.ociManifest || mt === MediaType.dockerManifest;
export const isConfigType = (mt: string): boolean => mt === MediaType.ociConfig || mt === MediaType.dockerConfig;
export const isKnownConfig = (mt: string): boolean =>
  isConfigType(mt) || mt === MediaType.containerdCheckpoint || mt === MediaType.containerdCheckpointConfig;

/** containerd's images.IsLayerType: OCI layers, and Docker layers with any `+` suffix. */
export function isLayerType(mt: string): boolean {
  if (mt.startsWith('application/vnd.oci.image.layer.')) return true;
  const base = mt.split('+')[0] ?? '';
  return (
    base === MediaType.dockerLayer ||
    base === MediaType.dockerLayerGzip ||
    base === MediaType.dockerLayerForeign ||
    base === MediaType.dockerLayerForeignGzip
  );
}

/** Layers that registries may not serve and archives may leave out (Windows base layers). */
export const isNonDistributable = (mt: string): boolean =>
  mt.startsWith('application/vnd.oci.image.layer.nondistributable.') || mt.startsWith('application/vnd.docker.image.rootfs.foreign.');

/** `type/subtype` with the characters RFC 6838 allows (plus `+` suffixes and parameters-free). */
export const isWellFormedMediaType = (mt: string): boolean => /^[A-Za-z0-9][\w!#$&^.+-]{0,126}\/[A-Za-z0-9][\w!#$&^.+-]{0,126}$/.test(mt);

/**
 * The GC label key by which a parent refers to `child`: containerd's
 * ChildGCLabels plus SetChildrenLabels' numbering (a key ending in `.` is
 * numbered from 0; another is numbered only from its second use).
 */
export function childGcLabel(child: Descriptor, counters: Map<string, number>): string {
  let key: string;
  if (isKnownConfig(child.mediaType)) key = GcRef.config;
  else if (isManifestType(child.mediaType)) key = GcRef.manifestPrefix;
  else if (isLayerType(child.mediaType)) key = GcRef.layerPrefix;
  else key = GcRef.otherPrefix;
  const n = counters.get(key) ?? 0;
  counters.set(key, n + 1);
  return n > 0 || key.endsWith('.') ? `${key}${n}` : key;
}

/** `sha256:<64 hex>` or `sha512:<128 hex>`, the digests berth accepts in archives. */
export function isDigest(d: unknown): d is string {
  return typeof d === 'string' && /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(d);
}
