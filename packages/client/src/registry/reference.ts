import { InvalidArgumentError } from '@berth/plugin-api';

export const DOCKER_HUB_DOMAIN = 'docker.io';
/** Where docker.io's distribution API answers. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
export const DEFAULT_TAG = 'latest';

// Docker's reference grammar (distribution/reference/regexp.go).
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;
const NAME_MAX = 255;

/**
 * An image reference, `[domain/]repository[:tag][@digest]`, normalized as
 * Docker does: no domain means docker.io, a one-part docker.io repository
 * gains `library/`, and neither tag nor digest means `:latest`.
 */
export class Reference {
  constructor(
    /** Registry host, with its port when given: `docker.io`, `localhost:5000`. */
    readonly domain: string,
    /** The path within the registry: `library/alpine`. */
    readonly repository: string,
    readonly tag?: string,
    readonly digest?: string,
  ) {}

  /** `domain/repository`. */
  get name(): string {
    return `${this.domain}/${this.repository}`;
  }

  /** What the manifest endpoint is asked for: the digest when there is one, else the tag. */
  get object(): string {
    return this.digest ?? this.tag ?? DEFAULT_TAG;
  }

  /** The host the distribution API is reached at (docker.io's lives elsewhere). */
  get apiHost(): string {
    return this.domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_API_HOST : this.domain;
  }

  /** The host without its port: containerd keys `containerd.io/distribution.source.<host>` on it. */
  get hostname(): string {
    const d = this.domain;
    if (d.startsWith('[')) return d.slice(1, d.indexOf(']'));
    const colon = d.lastIndexOf(':');
    return colon === -1 ? d : d.slice(0, colon);
  }

  withTag(tag: string): Reference {
    return new Reference(this.domain, this.repository, tag, undefined);
  }

  withDigest(digest: string): Reference {
    return new Reference(this.domain, this.repository, this.tag, digest);
  }

  toString(): string {
    return `${this.name}${this.tag ? `:${this.tag}` : ''}${this.digest ? `@${this.digest}` : ''}`;
  }
}

/** Parse and normalize; InvalidArgumentError says what is wrong. */
export function parseReference(text: string): Reference {
  const bad = (why: string) => new InvalidArgumentError(`invalid reference ${JSON.stringify(text)}: ${why}`);
  if (text === '') throw bad('empty');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`bad digest ${JSON.stringify(digest)}`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  // A colon after the last slash starts a tag; one before it is a port.
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`bad tag ${JSON.stringify(tag)}`);
  }
  let domain = DOCKER_HUB_DOMAIN;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash !== -1) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      if (!DOMAIN.test(first)) throw bad(`bad registry host ${JSON.stringify(first)}`);
      domain = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') domain = DOCKER_HUB_DOMAIN;
  if (repository === '') throw bad('no repository');
  if (/[A-Z]/.test(repository)) throw bad('repository name must be lowercase');
  if (!REPOSITORY.test(repository)) throw bad(`bad repository ${JSON.stringify(repository)}`);
  if (domain === DOCKER_HUB_DOMAIN && !repository.includes('/')) repository = `library/${repository}`;
  if (`${domain}/${repository}`.length > NAME_MAX) throw bad(`name longer than ${NAME_MAX} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new Reference(domain, repository, tag, digest);
}
