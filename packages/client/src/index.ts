export { BerthClient, type BerthClientOptions, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from './berth-client.js';
export { ClientContext, type RequestOptions } from './client-context.js';
export { anyFromWire, anyToWire, ContainersClient, containerSpec } from './containers-client.js';
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
export { defaultFifoRoot, FifoSet, type FifoSetOptions, removeContainerFifos, removeFifoDir } from './io/fifo-set.js';
export { ProcessIO, type ProcessStreams } from './io/process-io.js';
export { FORWARDED_SIGNALS, forwardSignals } from './io/signal-forwarder.js';
export { ConsoleSession, type TerminalSize } from './io/terminal.js';
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
export {
  attachProcess,
  containerRootfs,
  createContainer,
  DEFAULT_RUNTIME,
  DEFAULT_SNAPSHOTTER,
  DEFAULT_SNAPSHOTTER_LABEL,
  deleteContainer,
  deleteProcess,
  deleteTask,
  type ExecOptions,
  execProcess,
  type NewContainerOptions,
  ProcessHandle,
  RUNC_OPTIONS_TYPE_URL,
  type RunOptions,
  type RunResult,
  runContainer,
  STOP_SIGNAL_LABEL,
  type StartOptions,
  startTask,
} from './run.js';
export { type ContainerSpecOptions, generateContainerSpec, parseMountFlag } from './spec/container-spec.js';
export { DEFAULT_UNIX_ENV, defaultMounts, defaultUnixCapabilities, defaultUnixDevices, defaultUnixSpec } from './spec/default-spec.js';
export { chainId, type ImageRunConfig, type ResolvedImage, resolveImage } from './spec/image-config.js';
export { type RootfsFiles, rootfsFromDirectory, rootfsFromMounts } from './spec/rootfs-files.js';
export {
  OCI_VERSION,
  processToAny,
  resourcesToAny,
  type RuntimeLinuxResources,
  type RuntimeMount,
  type RuntimeProcess,
  type RuntimeSpec,
  SpecTypeUrl,
  specFromAny,
  specToAny,
} from './spec/runtime-spec.js';
export { replaceOrAppendEnv } from './spec/spec-opts.js';
export { applyAdditionalGids, applyUser, type GroupEntry, type PasswdEntry, parseGroup, parsePasswd } from './spec/user.js';
export {
  type CgroupV1Metrics,
  type CgroupV2Metrics,
  type CreateTaskOptions,
  type DeletedProcess,
  type ExitStatus,
  MetricsTypeUrl,
  parseSignal,
  type ProcessIOConfig,
  signalName,
  type TaskMetric,
  type TaskPid,
  type TaskProcess,
  TasksClient,
} from './tasks-client.js';
export { DiffClient, type DiffOptions } from './diff-client.js';
export {
  DEFAULT_SNAPSHOTTER_ID,
  mountsFromWire,
  mountsToWire,
  SNAPSHOT_REF_LABEL,
  SnapshotsClient,
  type SnapshotsClientOptions,
  snapshotInfoFromWire,
  type WireMount,
} from './snapshots-client.js';
export { isUnpacked, snapshotGcLabel, type UnpackedLayer, type UnpackOptions, type UnpackResult, unpack } from './unpack.js';
export { VersionClient, type VersionInfo } from './version-client.js';
export * from './registry/index.js';
