export { type BuildImageOptions, type BuildResult, type BuiltLayer, buildImage } from './build-image.js';
export { startContainerd, type TestContainerd } from './containerd.js';
export { deterministicRandom } from './deterministic-random.js';
export { type DockerArchiveOptions, writeDockerArchive } from './docker-archive.js';
export { blobPath, type LayoutImage, readImageLayout } from './image-layout.js';
export { BUSYBOX_APPLETS, DEFAULT_BUSYBOX, type FileSpec, type LayerSpec } from './layer-sources.js';
export * from './oci.js';
export { writeOciArchive } from './oci-archive.js';
export {
  buildPreset,
  type CachedImage,
  type CachedPresetOptions,
  cachedPreset,
  cacheKey,
  defaultCacheRoot,
  isPresetName,
  PRESETS,
  type PresetName,
  type PresetOptions,
  presetOptions,
} from './presets.js';
export { type CommandResult, isAlive, runCommand } from './processes.js';
export {
  DOCKER_REGISTRY,
  htpasswdLine,
  inspectWithSkopeo,
  pushWithSkopeo,
  type RegistryCredentials,
  type RegistryOptions,
  type SkopeoInspection,
  type SkopeoOptions,
  startRegistry,
  type TestRegistry,
} from './registry.js';
