export { BerthClient, type BerthClientOptions, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from './berth-client.js';
export { ClientContext, type RequestOptions } from './client-context.js';
export {
  ContentClient,
  type ContentSource,
  ContentWriter,
  type IngestOptions,
  WRITE_CHUNK_BYTES,
  type WriterOptions,
} from './content-client.js';
export { type EventEnvelope, EventsClient } from './events-client.js';
export { HealthClient, type HealthStatus } from './health-client.js';
export { descriptorFromWire, descriptorToWire, ImagesClient, type WireDescriptor } from './images-client.js';
export { IntrospectionClient, pluginFromWire, type WirePlugin } from './introspection-client.js';
export {
  contextLease,
  type CreateLeaseOptions,
  DEFAULT_LEASE_EXPIRY_MS,
  LeasedClientContext,
  LeasesClient,
  randomLeaseId,
  rfc3339,
} from './leases-client.js';
export { NamespacesClient } from './namespaces-client.js';
export { type ExportOptions, exportArchive } from './oci/archive-exporter.js';
export type { OciDescriptor } from './oci/go-json.js';
export { cleanEntryName, type ImportOptions, type ImportProgress, importArchive, MAX_JSON_BYTES } from './oci/archive-importer.js';
// Named apart from the registry module's MediaType / formatPlatform / parsePlatform, which `export *` brings in below.
export {
  Annotation,
  childGcLabel,
  GcRef,
  isIndexType,
  isLayerType,
  isManifestType,
  MediaType as OciMediaType,
} from './oci/media-types.js';
export {
  formatPlatform as formatOciPlatform,
  hostPlatform,
  type OciPlatform,
  type PlatformMatcher,
  Platforms,
  parsePlatform as parseOciPlatform,
} from './oci/platforms.js';
export { familiarizeReference, normalizeDockerRef, ociReferenceName, parseDockerReference } from './oci/references.js';
export { readTar, type TarEntry, TarWriter } from './oci/tar.js';
export { VersionClient, type VersionInfo } from './version-client.js';
export * from './registry/index.js';
