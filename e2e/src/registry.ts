/**
 * A private docker-registry and skopeo for e2e scenarios: push test images built by
 * @berth/image-builder, then pull them through berthd. The logic and its tests live in
 * tools/image-builder (src/registry.ts); this is the e2e suite's one place to import it from.
 */
export {
  htpasswdLine,
  inspectWithSkopeo,
  pushWithSkopeo,
  type RegistryCredentials,
  type RegistryOptions,
  type SkopeoInspection,
  type SkopeoOptions,
  startRegistry,
  type TestRegistry,
} from '@berth/image-builder';
