import {
  type Descriptor,
  errorKindOf,
  errorMessage,
  type Image,
  type ImageInput,
  InvalidArgumentError,
  NotFoundError,
} from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { posix } from 'node:path';
import { PassThrough } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { ClientContext, RequestOptions } from '../client-context.js';
import { ContentClient } from '../content-client.js';
import type { ImagesClient } from '../images-client.js';
import { contextLease, DEFAULT_LEASE_EXPIRY_MS, LeasedClientContext, type LeasesClient } from '../leases-client.js';
import { dockerManifestJson, indexJson, type OciDescriptor } from './go-json.js';
import {
  Annotation,
  childGcLabel,
  isConfigType,
  isDigest,
  isIndexType,
  isManifestType,
  isNonDistributable,
  isWellFormedMediaType,
  MediaType,
} from './media-types.js';
import { formatPlatform, hostPlatform, normalizePlatform, type OciPlatform, type PlatformMatcher, Platforms, parsePlatform } from './platforms.js';
import { normalizeDockerRef, ociReferenceName, refTranslator } from './references.js';
import { readTar, type TarEntry } from './tar.js';

/** Index, manifest and config JSON larger than this are refused (containerd bounds them too, after CVE-2023-25153). */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

export interface ImportOptions extends RequestOptions {
  /**
   * Prefix for OCI ref names that are only a tag (`latest` → `<prefix>:latest`),
   * as ctr's `--base-name` and its `import-<date>` default. Without it such
   * names are used as they are (containerd's client).
   */
  readonly namePrefix?: string;
  /** With `namePrefix`: skip full names outside it (what ctr's `--base-name` does). */
  readonly onlyPrefixed?: boolean;
  /** Also keep the archive's index as an image of this name (ctr's `--index-name`). */
  readonly indexName?: string;
  /** Take every platform of multi-platform images. */
  readonly allPlatforms?: boolean;
  /** `os/arch[/variant]`: take only this platform; default: this host's and those it runs (containerd's default). */
  readonly platform?: string;
  /** Largest index / manifest / config / manifest.json accepted, in bytes (default 4 MiB). */
  readonly maxJsonBytes?: number;
  /** Told of each blob as it is stored and each image as it is made. */
  readonly onProgress?: (event: ImportProgress) => void;
}

export type ImportProgress =
  | { readonly kind: 'blob'; readonly name: string; readonly digest: string; readonly size: number; readonly written: boolean }
  | { readonly kind: 'image'; readonly name: string; readonly digest: string };

export interface ImportDeps {
  readonly content: ContentClient;
  readonly images: ImagesClient;
  readonly leases: LeasesClient;
  readonly context: ClientContext;
}

/** A file of the archive now in the content store. */
interface ArchiveBlob {
  readonly name: string;
  readonly digest: string;
  readonly size: number;
  /** First bytes, to tell compressed layers from plain tar. */
  readonly head: Buffer;
}

/** What one pass over the tar stream found. */
interface ArchiveContents {
  readonly byName: Map<string, ArchiveBlob>;
  readonly byDigest: Map<string, ArchiveBlob>;
  readonly links: Map<string, string>;
  ociLayout?: { imageLayoutVersion?: unknown };
  indexJson?: Buffer;
  manifestJson?: Buffer;
}

/** Files of a `docker save` archive that no image needs (the v1 layer metadata). */
const DOCKER_LEGACY = /^(repositories|[^/]+\/(json|VERSION))$/;

const invalid = (message: string) => new InvalidArgumentError(message);

/**
 * Import an OCI image layout or `docker save` tarball: see ImagesClient.importArchive.
 * Everything happens under a lease that is dropped (and collected) on failure;
 * when the client already carries a lease, that one is used and left to its owner.
 */
export async function importArchive(
  deps: ImportDeps,
  source: string | AsyncIterable<Uint8Array | string>,
  opts: ImportOptions = {},
): Promise<Image[]> {
  const input = typeof source === 'string' ? await openFile(source) : source;
  // Inside the caller's lease (client.withLease), everything joins it and the caller releases it.
  const callerLease = contextLease(deps.context);
  const lease = callerLease ?? (await deps.leases.create({ expireAfterMs: DEFAULT_LEASE_EXPIRY_MS, ...withSignal(opts) })).id;
  const leased = callerLease ? deps.context : new LeasedClientContext(deps.context, lease);
  const importer = new ArchiveImporter(new ContentClient(leased), deps.images, opts);
  try {
    const images = await importer.run(input);
    if (!callerLease) await deps.leases.delete(lease, withSignal(opts));
    return images;
  } catch (err) {
    await importer.abortIngest();
    // Synchronously, so that whatever the archive brought is gone when we report.
    if (!callerLease) await deps.leases.delete(lease, { sync: true }).catch(() => {});
    throw err;
  }
}

function withSignal(opts: RequestOptions): RequestOptions {
  return opts.signal ? { signal: opts.signal } : {};
}

async function openFile(path: string): Promise<AsyncIterable<Uint8Array>> {
  try {
    await access(path);
  } catch (err) {
    throw new NotFoundError(`archive ${path}: ${errorMessage(err)}`);
  }
  return createReadStream(path, { highWaterMark: 1024 * 1024 });
}

/** The stream as is, or gunzipped when it starts with gzip's magic (`docker save | gzip`). */
async function* maybeGunzip(source: AsyncIterable<Uint8Array | string>): AsyncIterable<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  let first = await it.next();
  while (!first.done && first.value.length === 0) first = await it.next();
  if (first.done) return;
  const head = typeof first.value === 'string' ? Buffer.from(first.value) : first.value;
  const rest = {
    [Symbol.asyncIterator]: () => it,
  } as AsyncIterable<Uint8Array | string>;
  if (!(head[0] === 0x1f && head[1] === 0x8b)) {
    yield head;
    for await (const piece of rest) yield typeof piece === 'string' ? Buffer.from(piece) : piece;
    return;
  }
  const gunzip = createGunzip();
  const feed = new PassThrough();
  feed.on('error', (err) => gunzip.destroy(err));
  feed.pipe(gunzip);
  (async () => {
    try {
      feed.write(head);
      for await (const piece of rest) {
        if (!feed.write(piece)) await new Promise((r) => feed.once('drain', r));
      }
      feed.end();
    } catch (err) {
      feed.destroy(err as Error);
    }
  })();
  try {
    for await (const piece of gunzip) yield piece as Buffer;
  } catch (err) {
    throw invalid(`archive is not valid gzip: ${errorMessage(err)}`);
  } finally {
    feed.destroy();
    await it.return?.();
  }
}

/** An archive entry's name, cleaned; refuses absolute names and `..` (InvalidArgumentError). */
export function cleanEntryName(raw: string): string {
  if (raw.includes('\0')) throw invalid(`archive entry ${JSON.stringify(raw)}: NUL in name`);
  if (raw.startsWith('/')) throw invalid(`archive entry ${JSON.stringify(raw)}: absolute path refused`);
  if (raw.split('/').includes('..')) throw invalid(`archive entry ${JSON.stringify(raw)}: ".." in path refused`);
  const clean = posix.normalize(raw).replace(/\/+$/, '');
  return clean === '' ? '.' : clean;
}

/** Where a link inside the archive points, refusing targets outside it. */
function linkTarget(name: string, link: string, hard: boolean): string {
  if (link.startsWith('/')) throw invalid(`archive entry ${JSON.stringify(name)}: link to absolute path ${JSON.stringify(link)} refused`);
  const target = posix.normalize(hard ? link : posix.join(posix.dirname(name), link));
  if (target === '..' || target.startsWith('../')) {
    throw invalid(`archive entry ${JSON.stringify(name)}: link ${JSON.stringify(link)} points outside the archive`);
  }
  return target.replace(/\/+$/, '');
}

/** The digest an entry's name promises: `blobs/<alg>/<hex>`, or docker's `<hex>.json` config. */
function digestOfName(name: string): string | undefined {
  const blob = /^blobs\/([a-z0-9]+)\/([^/]+)$/.exec(name);
  if (blob) {
    const digest = `${blob[1]}:${blob[2]}`;
    if (!isDigest(digest)) throw invalid(`archive entry ${JSON.stringify(name)}: not a valid blob name (want blobs/sha256/<64 hex>)`);
    return digest;
  }
  const config = /^([a-f0-9]{64})\.json$/.exec(name);
  return config ? `sha256:${config[1]}` : undefined;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalid(`${what}: malformed JSON: ${errorMessage(err)}`);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string')) throw invalid(`${what}: annotations must map strings to strings`);
  return v as Record<string, string>;
}

/** A descriptor from a JSON document, checked field by field. */
function parseDescriptor(v: unknown, what: string): OciDescriptor {
  if (!isObject(v)) throw invalid(`${what}: not a descriptor object`);
  const { mediaType, digest, size, urls, platform } = v;
  if (typeof mediaType !== 'string' || !isWellFormedMediaType(mediaType)) {
    throw invalid(`${what}: invalid media type ${JSON.stringify(mediaType)}`);
  }
  if (!isDigest(digest)) throw invalid(`${what}: invalid digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(`${what}: invalid size ${JSON.stringify(size)}`);
  if (urls !== undefined && urls !== null && (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string'))) {
    throw invalid(`${what}: urls must be strings`);
  }
  let plat: OciPlatform | undefined;
  if (platform !== undefined && platform !== null) {
    if (!isObject(platform) || typeof platform.os !== 'string' || typeof platform.architecture !== 'string') {
      throw invalid(`${what}: invalid platform`);
    }
    plat = platform as unknown as OciPlatform;
  }
  const annotations = stringMap(v.annotations, what);
  return {
    mediaType,
    digest,
    size,
    ...(Array.isArray(urls) && urls.length > 0 ? { urls: urls as string[] } : {}),
    ...(annotations ? { annotations } : {}),
    ...(plat ? { platform: plat } : {}),
  };
}

function parseIndex(bytes: Buffer, what: string, mediaType?: string): OciDescriptor[] {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) throw invalid(`${what}: not a JSON object`);
  // containerd's validateMediaType: a document's own mediaType must agree with how it is referenced.
  if (doc.mediaType !== undefined && doc.mediaType !== '' && !isIndexType(String(doc.mediaType))) {
    throw invalid(`${what}: its mediaType is ${JSON.stringify(doc.mediaType)}, not an index`);
  }
  if (mediaType && typeof doc.mediaType === 'string' && doc.mediaType !== '' && doc.mediaType !== mediaType) {
    throw invalid(`${what}: its mediaType ${doc.mediaType} differs from the ${mediaType} it is referenced as`);
  }
  if (doc.config !== undefined || doc.layers !== undefined) throw invalid(`${what}: a manifest where an index was expected`);
  if (doc.manifests === null || doc.manifests === undefined) return [];
  if (!Array.isArray(doc.manifests)) throw invalid(`${what}: manifests is not an array`);
  return doc.manifests.map((m, i) => parseDescriptor(m, `${what}: manifests[${i}]`));
}

function parseManifest(bytes: Buffer, what: string, mediaType: string): { config: OciDescriptor; layers: OciDescriptor[] } {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) throw invalid(`${what}: not a JSON object`);
  if (doc.manifests !== undefined) throw invalid(`${what}: an index where a manifest was expected`);
  if (typeof doc.mediaType === 'string' && doc.mediaType !== '' && doc.mediaType !== mediaType) {
    throw invalid(`${what}: its mediaType ${doc.mediaType} differs from the ${mediaType} it is referenced as`);
  }
  if (doc.schemaVersion !== 2) throw invalid(`${what}: schemaVersion ${JSON.stringify(doc.schemaVersion)} is not 2`);
  const config = parseDescriptor(doc.config, `${what}: config`);
  if (doc.layers !== null && doc.layers !== undefined && !Array.isArray(doc.layers)) throw invalid(`${what}: layers is not an array`);
  const layers = ((doc.layers as unknown[] | null | undefined) ?? []).map((l, i) => parseDescriptor(l, `${what}: layers[${i}]`));
  return { config, layers };
}

/** Go's content.DetectCompression, as much as the importer needs: compressed or not. */
function isCompressed(head: Buffer): boolean {
  const gzip = head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08;
  const zstd = head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd;
  const bzip2 = head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68;
  const xz = head[0] === 0xfd && head.subarray(1, 6).toString('latin1') === '7zXZ\0';
  return gzip || zstd || bzip2 || xz;
}

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

class ArchiveImporter {
  private readonly maxJson: number;
  private readonly matcher: PlatformMatcher;
  /** The ingest in flight, aborted if the import fails. */
  private currentRef: string | undefined;
  /** Labels to set on parents so that GC keeps their children: digest → labels. */
  private readonly gcLabels = new Map<string, Record<string, string>>();
  private readonly walked = new Set<string>();

  constructor(
    private readonly content: ContentClient,
    private readonly images: ImagesClient,
    private readonly opts: ImportOptions,
  ) {
    this.maxJson = opts.maxJsonBytes ?? MAX_JSON_BYTES;
    this.matcher = opts.allPlatforms
      ? Platforms.all
      : opts.platform
        ? Platforms.strict(parsePlatform(opts.platform))
        : Platforms.only(hostPlatform());
  }

  async run(source: AsyncIterable<Uint8Array | string>): Promise<Image[]> {
    const archive = await this.readArchive(source);
    const root = archive.ociLayout !== undefined ? this.ociRoot(archive) : await this.dockerRoot(archive);

    // Check every document and blob the selected images need before creating anything.
    const wanted: ImageInput[] = [];
    const translate = this.opts.namePrefix ? refTranslator(this.opts.namePrefix, !!this.opts.onlyPrefixed) : (ref: string) => ref;
    const counters = new Map<string, number>();
    const rootLabels: Record<string, string> = {};
    for (const [i, m] of root.manifests.entries()) {
      const what = `index.json: manifests[${i}]`;
      if (!isIndexType(m.mediaType) && !isManifestType(m.mediaType)) {
        throw invalid(`${what}: unsupported media type ${m.mediaType} (want an image index or manifest)`);
      }
      // Every entry the archive names is taken whole; platforms are chosen inside indexes.
      await this.walk(m, archive, what);
      rootLabels[childGcLabel(m, counters)] = m.digest;
      const name = m.annotations?.[Annotation.imageName] || translate(m.annotations?.[Annotation.refName] ?? '');
      if (name) wanted.push({ name, target: targetOf(m) });
    }
    if (wanted.length === 0 && !this.opts.indexName) {
      throw invalid('archive names no image: give an index name, or a name prefix for unnamed refs');
    }

    if (this.opts.indexName) {
      await this.ingestBytes(`index-${root.descriptor.digest}`, root.bytes, root.descriptor.digest, rootLabels);
      wanted.unshift({ name: this.opts.indexName, target: targetOf(root.descriptor) });
    }
    for (const [digest, labels] of this.gcLabels) {
      await this.content.update(digest, labels, Object.keys(labels).map((k) => `labels.${k}`), this.opts);
    }
    const made: Image[] = [];
    for (const image of wanted) {
      made.push(await this.images.put(image, this.opts));
      this.opts.onProgress?.({ kind: 'image', name: image.name, digest: image.target.digest });
    }
    return made;
  }

  async abortIngest(): Promise<void> {
    if (this.currentRef) await this.content.abort(this.currentRef).catch(() => {});
  }

  /** One pass over the tar stream: every regular file goes to the content store, but the layout's own JSON. */
  private async readArchive(source: AsyncIterable<Uint8Array | string>): Promise<ArchiveContents> {
    const found: ArchiveContents = { byName: new Map(), byDigest: new Map(), links: new Map() };
    for await (const entry of readTar(maybeGunzip(source))) {
      const name = cleanEntryName(entry.name);
      if (entry.type === 'symlink' || entry.type === 'hardlink') {
        found.links.set(name, linkTarget(name, entry.linkname, entry.type === 'hardlink'));
        continue;
      }
      if (entry.type !== 'file') continue;
      switch (name) {
        case 'oci-layout': {
          const doc = parseJson(await this.readSmall(entry, name), name);
          if (!isObject(doc)) throw invalid('oci-layout: not a JSON object');
          found.ociLayout = doc;
          break;
        }
        case 'index.json':
          found.indexJson = await this.readSmall(entry, name);
          break;
        case 'manifest.json':
          found.manifestJson = await this.readSmall(entry, name);
          break;
        default: {
          if (DOCKER_LEGACY.test(name)) break;
          const blob = await this.ingestEntry(name, entry);
          found.byName.set(name, blob);
          found.byDigest.set(blob.digest, blob);
        }
      }
    }
    return found;
  }

  /** A JSON file of the layout, refused unread when larger than the bound. */
  private async readSmall(entry: TarEntry, name: string): Promise<Buffer> {
    if (entry.size > this.maxJson) throw invalid(`${name} is ${entry.size} bytes; refusing JSON over ${this.maxJson} bytes`);
    const parts: Buffer[] = [];
    for await (const piece of entry.body) parts.push(piece);
    return Buffer.concat(parts);
  }

  /** Stream one entry into the content store, checking it against the digest its name promises. */
  private async ingestEntry(name: string, entry: TarEntry): Promise<ArchiveBlob> {
    const named = digestOfName(name);
    const algorithm = named?.startsWith('sha512:') ? 'sha512' : 'sha256';
    const hash = createHash(algorithm);
    let head = Buffer.alloc(0);
    const body = (async function* () {
      for await (const piece of entry.body) {
        if (head.length < 16) head = Buffer.concat([head, piece.subarray(0, 16 - head.length)]);
        hash.update(piece);
        yield piece;
      }
    })();
    const ref = `tar-${name}`;
    this.currentRef = ref;
    const mismatch = () => {
      const actual = `${algorithm}:${hash.digest('hex')}`;
      return actual === named ? undefined : invalid(`archive entry ${name}: content digest ${actual} does not match its name (${named})`);
    };
    let digest: string;
    let written: boolean;
    try {
      // Only a name that is a digest makes a partial ingest of the same ref safe to resume.
      const r = await this.content.ingestWithDigest(ref, body, {
        ...(named ? { expected: named } : {}),
        total: entry.size,
        resume: !!named,
        ...withSignal(this.opts),
      });
      digest = r.digest;
      written = r.written;
      if (!r.written && named) {
        // The store had it already: read the entry anyway, to check the archive says what it claims.
        for await (const _ of body);
        const err = mismatch();
        if (err) throw err;
      }
    } catch (err) {
      if (named && errorKindOf(err) === 'failed-precondition') throw mismatch() ?? err;
      throw err;
    }
    this.currentRef = undefined;
    this.opts.onProgress?.({ kind: 'blob', name, digest, size: entry.size, written });
    return { name, digest, size: entry.size, head };
  }

  private async ingestBytes(ref: string, bytes: Uint8Array, digest: string, labels: Record<string, string> = {}): Promise<void> {
    this.currentRef = ref;
    await this.content.ingestWithDigest(ref, bytes, { expected: digest, total: bytes.length, labels, ...withSignal(this.opts) });
    this.currentRef = undefined;
  }

  /** OCI layout: index.json is the root. */
  private ociRoot(archive: ArchiveContents): Root {
    const version = archive.ociLayout?.imageLayoutVersion;
    if (version !== '1.0.0') throw invalid(`oci-layout: unsupported imageLayoutVersion ${JSON.stringify(version)}`);
    if (!archive.indexJson) throw invalid('OCI layout without index.json');
    const bytes = archive.indexJson;
    const manifests = parseIndex(bytes, 'index.json', MediaType.ociIndex);
    return { bytes, manifests, descriptor: { mediaType: MediaType.ociIndex, digest: sha256(bytes), size: bytes.length } };
  }

  /**
   * `docker save` archive: make a docker schema 2 manifest per manifest.json
   * entry and an index over them, as containerd's importer does (same bytes,
   * same digests).
   */
  private async dockerRoot(archive: ArchiveContents): Promise<Root> {
    if (!archive.manifestJson) {
      throw invalid('unrecognized image format: neither an OCI layout (oci-layout, index.json) nor a docker archive (manifest.json)');
    }
    const doc = parseJson(archive.manifestJson, 'manifest.json');
    if (!Array.isArray(doc)) throw invalid('manifest.json: not a JSON array');
    const resolve = (file: unknown, what: string): ArchiveBlob => {
      if (typeof file !== 'string') throw invalid(`manifest.json: ${what} is not a file name`);
      let name = cleanEntryName(file);
      for (let hops = 0; archive.links.has(name) && hops < 16; hops++) name = archive.links.get(name) ?? name;
      const blob = archive.byName.get(name);
      if (!blob) throw invalid(`manifest.json: ${what} ${JSON.stringify(file)} not found in the archive`);
      return blob;
    };
    const manifests: OciDescriptor[] = [];
    for (const [i, entry] of doc.entries()) {
      if (!isObject(entry)) throw invalid(`manifest.json: entry ${i} is not an object`);
      const { Config, RepoTags, Layers } = entry;
      if (RepoTags !== undefined && RepoTags !== null && (!Array.isArray(RepoTags) || RepoTags.some((t) => typeof t !== 'string'))) {
        throw invalid(`manifest.json: entry ${i}: RepoTags must be strings`);
      }
      if (Layers !== undefined && Layers !== null && !Array.isArray(Layers)) throw invalid(`manifest.json: entry ${i}: Layers is not an array`);
      const configBlob = resolve(Config, 'image config');
      const config: OciDescriptor = { mediaType: MediaType.dockerConfig, digest: configBlob.digest, size: configBlob.size };
      const image = await this.readJson(config, `image config ${Config}`);
      if (!isObject(image)) throw invalid(`image config ${Config}: not a JSON object`);
      const layers: OciDescriptor[] = ((Layers as unknown[] | null | undefined) ?? []).map((file, j) => {
        const blob = resolve(file, `layer ${j}`);
        const mediaType = blob.size > 0 && isCompressed(blob.head) ? MediaType.dockerLayerGzip : MediaType.dockerLayer;
        return { mediaType, digest: blob.digest, size: blob.size };
      });
      const bytes = Buffer.from(dockerManifestJson(config, layers));
      const digest = sha256(bytes);
      await this.ingestBytes(`manifest-${digest}`, bytes, digest);
      archive.byDigest.set(digest, { name: `(manifest of ${Config})`, digest, size: bytes.length, head: Buffer.alloc(0) });
      // containerd's images.Platforms on a docker manifest: the config's os and architecture, normalized.
      const platform = normalizePlatform({ os: String(image.os ?? ''), architecture: String(image.architecture ?? '') });
      const desc: OciDescriptor = {
        mediaType: MediaType.dockerManifest,
        digest,
        size: bytes.length,
        platform: { architecture: platform.architecture, os: platform.os, ...(platform.variant ? { variant: platform.variant } : {}) },
      };
      const tags = (RepoTags as string[] | null | undefined) ?? [];
      if (tags.length === 0) manifests.push(desc);
      for (const tag of tags) {
        const name = normalizeDockerRef(tag);
        manifests.push({ ...desc, annotations: { [Annotation.imageName]: name, [Annotation.refName]: ociReferenceName(name) } });
      }
    }
    const bytes = Buffer.from(indexJson(manifests));
    return { bytes, manifests, descriptor: { mediaType: MediaType.ociIndex, digest: sha256(bytes), size: bytes.length } };
  }

  /** The blob `desc` names must be in the archive, with the size `desc` says. */
  private present(desc: OciDescriptor, archive: ArchiveContents, what: string): boolean {
    const blob = archive.byDigest.get(desc.digest);
    if (!blob) {
      // Foreign layers (Windows base layers) are fetched from their URLs, never shipped.
      if (isNonDistributable(desc.mediaType) || (desc.urls?.length ?? 0) > 0) return false;
      throw invalid(`${what}: blob ${desc.digest} (${desc.mediaType}) is missing from the archive`);
    }
    if (blob.size !== desc.size) throw invalid(`${what}: blob ${desc.digest} is ${blob.size} bytes in the archive, ${desc.size} in its descriptor`);
    return true;
  }

  private async readJson(desc: OciDescriptor, what: string): Promise<unknown> {
    return parseJson(await this.readBounded(desc, what), what);
  }

  private async readBounded(desc: OciDescriptor, what: string): Promise<Buffer> {
    if (desc.size > this.maxJson) throw invalid(`${what}: ${desc.size} bytes; refusing JSON over ${this.maxJson} bytes`);
    return this.content.readAll(desc.digest, { maxBytes: this.maxJson, ...withSignal(this.opts) });
  }

  /** Check an index or manifest and what it needs for the chosen platforms; plan its GC labels. */
  private async walk(desc: OciDescriptor, archive: ArchiveContents, what: string, depth = 0): Promise<void> {
    if (depth > 8) throw invalid(`${what}: indexes nested too deep`);
    if (this.walked.has(desc.digest)) return;
    this.walked.add(desc.digest);
    this.present(desc, archive, what);
    const here = `${what} (${desc.digest})`;
    const counters = new Map<string, number>();
    const labels: Record<string, string> = {};
    if (isIndexType(desc.mediaType)) {
      const all = parseIndex(await this.readBounded(desc, here), here, desc.mediaType);
      const chosen = all.filter((m) => !m.platform || this.matcher.match(m.platform));
      if (all.length > 0 && chosen.length === 0) {
        const has = all.map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ');
        throw invalid(`${here}: no manifest for ${this.matcher.description} (it has ${has}); import all platforms or choose one`);
      }
      for (const [i, m] of chosen.entries()) {
        if (!isIndexType(m.mediaType) && !isManifestType(m.mediaType)) {
          throw invalid(`${here}: manifests[${i}]: unsupported media type ${m.mediaType} (want an image index or manifest)`);
        }
        await this.walk(m, archive, `${here}: manifests[${i}]`, depth + 1);
        labels[childGcLabel(m, counters)] = m.digest;
      }
    } else if (isManifestType(desc.mediaType)) {
      const { config, layers } = parseManifest(await this.readBounded(desc, here), here, desc.mediaType);
      if (this.present(config, archive, `${here}: config`) && isConfigType(config.mediaType)) {
        const doc = await this.readJson(config, `${here}: config ${config.digest}`);
        if (!isObject(doc)) throw invalid(`${here}: config ${config.digest}: not a JSON object`);
      }
      labels[childGcLabel(config, counters)] = config.digest;
      for (const [i, layer] of layers.entries()) {
        this.present(layer, archive, `${here}: layers[${i}]`);
        labels[childGcLabel(layer, counters)] = layer.digest;
      }
    } else {
      throw invalid(`${what}: unsupported media type ${desc.mediaType} (want an image index or manifest)`);
    }
    if (Object.keys(labels).length > 0) this.gcLabels.set(desc.digest, labels);
  }
}

interface Root {
  readonly bytes: Buffer;
  readonly manifests: OciDescriptor[];
  readonly descriptor: OciDescriptor;
}

/** What the images store keeps of a descriptor (no platform). */
function targetOf(d: OciDescriptor): Descriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(d.annotations ? { annotations: { ...d.annotations } } : {}) };
}
