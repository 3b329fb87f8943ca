/** Media types of the OCI image spec and Docker's schema 2, and what containerd makes of them. */
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
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerSchema1Manifest: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What a manifest GET accepts, as containerd's resolver sends it. */
export const MANIFEST_ACCEPT = [
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.ociIndex,
  '*/*',
].join(', ');

export const isIndex = (mt: string): boolean => mt === MediaType.ociIndex || mt === MediaType.dockerManifestList;
export const isManifest = (mt: string): boolean => mt === MediaType.ociManifest || mt === MediaType.dockerManifest;

/** containerd's images.IsKnownConfig. */
export const isConfig = (mt: string): boolean =>
  mt === MediaType.dockerConfig ||
  mt === MediaType.ociConfig ||
  mt === 'application/octet-stream' ||
  mt === 'application/vnd.docker.plugin.v1+json' ||
  mt === 'application/vnd.cncf.helm.config.v1+json';

/** containerd's images.IsLayerType: OCI layers (any compression, non-distributable too) and Docker's. */
export const isLayer = (mt: string): boolean => {
  if (mt.startsWith('application/vnd.oci.image.layer.')) return true;
  const base = mt.split('+')[0] ?? mt;
  return (
    base === 'application/vnd.docker.image.rootfs.diff.tar' ||
    base === 'application/vnd.docker.image.rootfs.foreign.diff.tar' ||
    mt === MediaType.dockerLayerGzip ||
    mt === 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'
  );
};

/** The ingest ref prefix containerd's remotes.MakeRefKey uses, so an interrupted ctr pull and ours share ingests. */
export function refKeyPrefix(mt: string): string {
  if (isManifest(mt)) return 'manifest';
  if (isIndex(mt)) return 'index';
  if (isLayer(mt)) return 'layer';
  if (isConfig(mt)) return 'config';
  return 'unknown';
}
