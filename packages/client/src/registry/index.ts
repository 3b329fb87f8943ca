export { appendDistributionSource, childGcLabels, childrenOf, DISTRIBUTION_SOURCE_PREFIX, type ImageIndex, type ImageManifest, type ManifestDescriptor } from './manifest.js';
export { isConfig, isIndex, isLayer, isManifest, MANIFEST_ACCEPT, MediaType } from './media-types.js';
export { DEFAULT_PLATFORM, formatPlatform, normalizePlatform, type Platform, parsePlatform, platformMatches } from './platform.js';
export type { ContentPort, ImagePort, IngestWriter, LeasePort, RegistryStores } from './ports.js';
export {
  formatBytes,
  formatRate,
  lineProgress,
  type ProgressListener,
  type ProgressRenderer,
  shortDigest,
  tableProgress,
  type TransferKind,
  type TransferProgress,
  type TransferStatus,
  TransferTracker,
} from './progress.js';
export { ingestRef, type PullOptions, type PullResult, pull, type TransferOptions } from './pull.js';
export { type PushOptions, type PushResult, push } from './push.js';
export { DEFAULT_TAG, DOCKER_HUB_API_HOST, DOCKER_HUB_DOMAIN, parseReference, Reference } from './reference.js';
export { type CredentialsProvider, parseUserOption, type RegistryCredentials, RegistryAuthorizer, type TokenFetcher } from './registry-auth.js';
export { type BlobResponse, type PushBlobOptions, pullScope, pushScope, RegistryClient, type RegistryClientOptions } from './registry-client.js';
export { DigestMismatchError, RegistryError, type RegistryErrorDetail } from './registry-error.js';
export { type RegistryTarget, registryStores, storesOf } from './registry-stores.js';
export { type AuthChallenge, parseWwwAuthenticate } from './www-authenticate.js';
