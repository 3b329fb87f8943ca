import { InvalidArgumentError } from '@berth/plugin-api';

/*
 * Docker image references as containerd's import and export treat them
 * (github.com/distribution/reference): `foo` is `docker.io/library/foo:latest`.
 */

const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*';
const DOMAIN = '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]+)?';
const REFERENCE = new RegExp(
  `^((?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*)(?::([\\w][\\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}))?$`,
);

export interface DockerReference {
  /** `docker.io/library/foo` */
  readonly name: string;
  readonly tag?: string;
  readonly digest?: string;
}

const DEFAULT_DOMAIN = 'docker.io';

/** Parse and normalize (containerd's ParseNormalizedNamed); InvalidArgumentError when malformed. */
export function parseDockerReference(ref: string): DockerReference {
  const slash = ref.indexOf('/');
  let domain = DEFAULT_DOMAIN;
  let remainder = ref;
  const first = slash === -1 ? '' : ref.slice(0, slash);
  if (slash !== -1 && (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first)) {
    domain = first;
    remainder = ref.slice(slash + 1);
  }
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.split(/[:@]/)[0]?.includes('/')) remainder = `library/${remainder}`;
  const full = `${domain}/${remainder}`;
  const m = REFERENCE.exec(full);
  if (!m || /[A-Z]/.test(remainder.split(/[:@]/)[0] ?? '')) {
    throw new InvalidArgumentError(`invalid image reference ${JSON.stringify(ref)}`);
  }
  const [, name = '', tag, digest] = m;
  if (name.length > 255) throw new InvalidArgumentError(`image reference ${JSON.stringify(ref)}: name longer than 255 characters`);
  return { name, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** containerd's ParseDockerRef: `foo` → `docker.io/library/foo:latest`; a digest wins over a tag. */
export function normalizeDockerRef(ref: string): string {
  const r = parseDockerReference(ref);
  if (r.digest) return `${r.name}@${r.digest}`;
  return `${r.name}:${r.tag ?? 'latest'}`;
}

/** `docker.io/library/foo:latest` → `foo:latest`, as `docker save` writes RepoTags. */
export function familiarizeReference(ref: string): string {
  const r = parseDockerReference(ref);
  let name = r.name;
  if (name.startsWith(`${DEFAULT_DOMAIN}/`)) {
    name = name.slice(DEFAULT_DOMAIN.length + 1);
    if (name.startsWith('library/') && name.split('/').length === 2) name = name.slice('library/'.length);
  }
  if (r.digest) return `${name}@${r.digest}`;
  return `${name}:${r.tag ?? 'latest'}`;
}

/**
 * The OCI `org.opencontainers.image.ref.name` for an image name: the part
 * after the repository (`latest`, or `@sha256:…`), as containerd's export.
 */
export function ociReferenceName(name: string): string {
  const slash = name.indexOf('/');
  if (slash === -1) return name;
  const path = name.slice(slash);
  const at = path.search(/[:@]/);
  if (at === -1) return name;
  const object = path.slice(at);
  return object.startsWith(':') ? object.slice(1) : object;
}

/**
 * containerd's archive.AddRefPrefix / FilterRefPrefix (ctr import's default
 * and `--base-name`): a tag-only OCI ref name gets `prefix:` in front; a full
 * reference stays, or with `onlyPrefixed` is dropped unless under `prefix`.
 */
export function refTranslator(prefix: string, onlyPrefixed: boolean): (ref: string) => string {
  return (ref) => {
    if (/[/:@]/.test(ref)) {
      if (onlyPrefixed && !hasImagePrefix(ref, prefix)) return '';
      return ref;
    }
    return `${prefix}:${ref}`;
  };
}

function hasImagePrefix(s: string, prefix: string): boolean {
  if (!s.startsWith(prefix)) return false;
  return s.length === prefix.length || ['/', ':', '@'].includes(s[prefix.length] ?? '');
}
