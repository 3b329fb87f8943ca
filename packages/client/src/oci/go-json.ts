import type { OciPlatform } from './platforms.js';

/*
 * The image documents berth writes (docker manifests and indexes made on
 * import, index.json and manifest.json on export) are encoded byte for byte as
 * Go's encoding/json encodes containerd's structs: fields in struct order,
 * map keys sorted, `<>&` escaped. Same input, same digests as containerd.
 */

/** An OCI descriptor as JSON documents carry it. */
export interface OciDescriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: OciPlatform;
  readonly artifactType?: string;
}

/** A JSON string as Go writes it. */
export function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function goMap(m: Readonly<Record<string, string>>): string {
  return `{${Object.keys(m)
    .sort()
    .map((k) => `${goString(k)}:${goString(m[k] ?? '')}`)
    .join(',')}}`;
}

function goStrings(list: readonly string[] | null | undefined): string {
  return list ? `[${list.map(goString).join(',')}]` : 'null';
}

/** Fields in order; `undefined` values are left out (Go's omitempty, decided by the caller). */
function goObject(fields: [string, string | undefined][]): string {
  return `{${fields
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${goString(k)}:${v}`)
    .join(',')}}`;
}

export function platformJson(p: OciPlatform): string {
  return goObject([
    ['architecture', goString(p.architecture ?? '')],
    ['os', goString(p.os ?? '')],
    ['os.version', p['os.version'] ? goString(p['os.version']) : undefined],
    ['os.features', p['os.features']?.length ? goStrings(p['os.features']) : undefined],
    ['variant', p.variant ? goString(p.variant) : undefined],
  ]);
}

export function descriptorJson(d: OciDescriptor): string {
  return goObject([
    ['mediaType', d.mediaType ? goString(d.mediaType) : undefined],
    ['digest', goString(d.digest)],
    ['size', String(d.size)],
    ['urls', d.urls?.length ? goStrings(d.urls) : undefined],
    ['annotations', d.annotations && Object.keys(d.annotations).length > 0 ? goMap(d.annotations) : undefined],
    ['platform', d.platform ? platformJson(d.platform) : undefined],
    ['artifactType', d.artifactType ? goString(d.artifactType) : undefined],
  ]);
}

/** ocispec.Index as containerd writes it (no mediaType field). */
export function indexJson(manifests: readonly OciDescriptor[]): string {
  return goObject([
    ['schemaVersion', '2'],
    ['manifests', manifests.length > 0 ? `[${manifests.map(descriptorJson).join(',')}]` : 'null'],
  ]);
}

/** The docker schema 2 manifest containerd's importer makes for each `docker save` image. */
export function dockerManifestJson(config: OciDescriptor, layers: readonly OciDescriptor[]): string {
  return goObject([
    ['schemaVersion', '2'],
    ['mediaType', goString('application/vnd.docker.distribution.manifest.v2+json')],
    ['config', descriptorJson(config)],
    ['layers', layers.length > 0 ? `[${layers.map(descriptorJson).join(',')}]` : 'null'],
  ]);
}

/** One entry of a docker `manifest.json`. */
export interface DockerManifestEntry {
  readonly Config: string;
  readonly RepoTags: readonly string[] | null;
  readonly Layers: readonly string[] | null;
}

export function dockerManifestListJson(entries: readonly DockerManifestEntry[]): string {
  return `[${entries
    .map((e) =>
      goObject([
        ['Config', goString(e.Config)],
        ['RepoTags', goStrings(e.RepoTags)],
        ['Layers', goStrings(e.Layers)],
      ]),
    )
    .join(',')}]`;
}
