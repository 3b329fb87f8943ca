import { type Descriptor, FailedPreconditionError, InvalidArgumentError, isNotFound, NotFoundError } from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { RequestOptions } from '../client-context.js';
import type { ContentClient } from '../content-client.js';
import type { ImagesClient } from '../images-client.js';
import { MAX_JSON_BYTES } from './archive-importer.js';
import { type DockerManifestEntry, dockerManifestListJson, indexJson, type OciDescriptor } from './go-json.js';
import { Annotation, isDigest, isIndexType, isManifestType, isNonDistributable } from './media-types.js';
import { hostPlatform, type PlatformMatcher, Platforms, parsePlatform } from './platforms.js';
import { familiarizeReference, ociReferenceName } from './references.js';
import { TarWriter } from './tar.js';

export interface ExportOptions extends RequestOptions {
  /**
   * `oci` (default): an OCI image layout (oci-layout, index.json, blobs/…) with
   * Docker's manifest.json beside it, as `ctr images export` writes; both
   * `ctr images import` and `docker load` read it. `docker`: the `docker save`
   * layout (manifest.json, `<config>.json`, `<layer>/layer.tar`), one platform per image.
   */
  readonly format?: 'oci' | 'docker';
  /** OCI format without manifest.json (ctr's `--skip-manifest-json`). */
  readonly skipManifestJson?: boolean;
  /** `os/arch[/variant]` to export from multi-platform images; default this host's (exactly, as ctr). */
  readonly platform?: string;
  /** Every platform of multi-platform images (their content must all be here). */
  readonly allPlatforms?: boolean;
  /** Leave out non-distributable layers (Windows base layers). */
  readonly skipNonDistributable?: boolean;
}

export interface ExportDeps {
  readonly content: ContentClient;
  readonly images: ImagesClient;
}

/** One file of the archive: a blob from the store, or bytes made here. */
interface ArchiveRecord {
  readonly name: string;
  readonly mode: number;
  readonly size: number;
  readonly digest?: string;
  readonly bytes?: Buffer;
  readonly directory?: boolean;
}

const blobPath = (digest: string) => `blobs/${digest.replace(':', '/')}`;

/**
 * Write images as a tar archive to `out` (not ended here), streaming blobs
 * from the content store and checking their digests on the way. Everything an
 * archive needs is looked up before the first byte is written, so a missing
 * blob fails the export without writing a partial archive.
 */
export async function exportArchive(deps: ExportDeps, names: readonly string[], out: Writable, opts: ExportOptions = {}): Promise<void> {
  if (names.length === 0) throw new InvalidArgumentError('no image to export');
  const exporter = new ArchiveExporter(deps.content, opts);
  const targets: OciDescriptor[] = [];
  for (const name of names) {
    const image = await deps.images.get(name, opts);
    targets.push({
      ...image.target,
      annotations: { ...image.target.annotations, [Annotation.imageName]: name, [Annotation.refName]: ociReferenceName(name) },
    });
  }
  const records = opts.format === 'docker' ? await exporter.dockerRecords(targets) : await exporter.ociRecords(targets);
  await exporter.check(records);
  await exporter.write(records, out);
}

class ArchiveExporter {
  private readonly matcher: PlatformMatcher;
  private readonly json = new Map<string, unknown>();

  constructor(
    private readonly content: ContentClient,
    private readonly opts: ExportOptions,
  ) {
    this.matcher = opts.platform ? Platforms.strict(parsePlatform(opts.platform)) : Platforms.strict(hostPlatform());
  }

  /** containerd's archive.Export: the blobs of each image, index.json over the image targets, manifest.json. */
  async ociRecords(targets: readonly OciDescriptor[]): Promise<ArchiveRecord[]> {
    const records: ArchiveRecord[] = [
      { name: 'oci-layout', mode: 0o444, size: 0, bytes: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { name: 'index.json', mode: 0o644, size: 0, bytes: Buffer.from(indexJson(targets)) },
    ];
    const algorithms = new Set<string>();
    const dockerManifests = new Map<string, { manifest: OciDescriptor; names: string[] }>();
    const resolvedIndex = new Map<string, string>();
    for (const desc of targets) {
      const name = desc.annotations?.[Annotation.imageName] ?? '';
      if (isManifestType(desc.mediaType)) {
        let m = dockerManifests.get(desc.digest);
        if (!m) {
          records.push(...(await this.blobsOf(desc, algorithms)));
          m = { manifest: desc, names: [] };
          dockerManifests.set(desc.digest, m);
        }
        if (name && !this.opts.skipManifestJson) m.names.push(name);
      } else if (isIndexType(desc.mediaType)) {
        let chosen = resolvedIndex.get(desc.digest);
        if (chosen === undefined) {
          records.push(this.blobRecord(desc, algorithms));
          const selected: OciDescriptor[] = [];
          for (const m of await this.children(desc)) {
            if (!m.platform || this.matcher.match(m.platform)) selected.push(m);
            else if (!this.opts.allPlatforms) continue;
            records.push(...(await this.blobsOf(m, algorithms)));
          }
          chosen = '';
          if (!this.opts.skipManifestJson) {
            const first = selected.find((m) => isManifestType(m.mediaType));
            if (first) {
              chosen = first.digest;
              if (!dockerManifests.has(chosen)) dockerManifests.set(chosen, { manifest: first, names: [] });
            } else if (selected.length === 0) {
              throw new NotFoundError(`${name || desc.digest}: no manifest for platform ${this.matcher.description}`);
            }
          }
          resolvedIndex.set(desc.digest, chosen);
        }
        if (chosen && name) dockerManifests.get(chosen)?.names.push(name);
      } else {
        throw new InvalidArgumentError(`${name || desc.digest}: only manifests and indexes may be exported, not ${desc.mediaType}`);
      }
    }
    if (dockerManifests.size > 0 && !this.opts.skipManifestJson) {
      const entries: DockerManifestEntry[] = [];
      for (const { manifest, names } of dockerManifests.values()) {
        const { config, layers } = await this.manifestOf(manifest);
        entries.push({
          Config: blobPath(config.digest),
          RepoTags: names.length > 0 ? names.map(familiarizeReference) : null,
          Layers: layers.length > 0 ? layers.map((l) => blobPath(l.digest)) : null,
        });
      }
      records.push({ name: 'manifest.json', mode: 0o644, size: 0, bytes: Buffer.from(dockerManifestListJson(entries)) });
    }
    if (algorithms.size > 0) {
      records.push({ name: 'blobs/', mode: 0o755, size: 0, directory: true });
      for (const alg of algorithms) records.push({ name: `blobs/${alg}/`, mode: 0o755, size: 0, directory: true });
    }
    return records;
  }

  /** `docker save`'s layout: per image one manifest (this platform), its config and layers, and manifest.json. */
  async dockerRecords(targets: readonly OciDescriptor[]): Promise<ArchiveRecord[]> {
    const records: ArchiveRecord[] = [];
    const entries = new Map<string, { config: string; layers: string[]; names: string[] }>();
    for (const desc of targets) {
      const name = desc.annotations?.[Annotation.imageName] ?? desc.digest;
      const manifest = await this.platformManifest(desc, name);
      let entry = entries.get(manifest.digest);
      if (!entry) {
        const { config, layers } = await this.manifestOf(manifest);
        const hex = (d: string) => d.slice(d.indexOf(':') + 1);
        records.push({ name: `${hex(config.digest)}.json`, mode: 0o644, size: config.size, digest: config.digest });
        const paths: string[] = [];
        for (const layer of layers) {
          if (this.opts.skipNonDistributable && isNonDistributable(layer.mediaType)) continue;
          records.push({ name: `${hex(layer.digest)}/`, mode: 0o755, size: 0, directory: true });
          records.push({ name: `${hex(layer.digest)}/layer.tar`, mode: 0o644, size: layer.size, digest: layer.digest });
          paths.push(`${hex(layer.digest)}/layer.tar`);
        }
        entry = { config: `${hex(config.digest)}.json`, layers: paths, names: [] };
        entries.set(manifest.digest, entry);
      }
      if (desc.annotations?.[Annotation.imageName]) entry.names.push(familiarizeReference(name));
    }
    const list: DockerManifestEntry[] = [...entries.values()].map((e) => ({
      Config: e.config,
      RepoTags: e.names.length > 0 ? e.names : null,
      Layers: e.layers.length > 0 ? e.layers : null,
    }));
    records.push({ name: 'manifest.json', mode: 0o644, size: 0, bytes: Buffer.from(dockerManifestListJson(list)) });
    return records;
  }

  /** The manifest of `desc` for the chosen platform (the first match), following nested indexes. */
  private async platformManifest(desc: OciDescriptor, name: string, depth = 0): Promise<OciDescriptor> {
    if (isManifestType(desc.mediaType)) return desc;
    if (!isIndexType(desc.mediaType) || depth > 8) {
      throw new InvalidArgumentError(`${name}: only manifests and indexes may be exported, not ${desc.mediaType}`);
    }
    for (const m of await this.children(desc)) {
      if (m.platform && !this.matcher.match(m.platform)) continue;
      if (isManifestType(m.mediaType) || isIndexType(m.mediaType)) return this.platformManifest(m, name, depth + 1);
    }
    throw new NotFoundError(`${name}: no manifest for platform ${this.matcher.description}`);
  }

  /** `desc` and everything below it (containerd's ChildrenHandler walk). */
  private async blobsOf(desc: OciDescriptor, algorithms: Set<string>, depth = 0): Promise<ArchiveRecord[]> {
    if (this.opts.skipNonDistributable && isNonDistributable(desc.mediaType)) return [];
    const records = [this.blobRecord(desc, algorithms)];
    if (depth > 8) throw new InvalidArgumentError(`${desc.digest}: indexes nested too deep`);
    for (const child of await this.children(desc)) records.push(...(await this.blobsOf(child, algorithms, depth + 1)));
    return records;
  }

  private blobRecord(desc: OciDescriptor, algorithms: Set<string>): ArchiveRecord {
    if (!isDigest(desc.digest)) throw new InvalidArgumentError(`invalid digest ${JSON.stringify(desc.digest)}`);
    algorithms.add(desc.digest.slice(0, desc.digest.indexOf(':')));
    return { name: blobPath(desc.digest), mode: 0o444, size: desc.size, digest: desc.digest };
  }

  private async children(desc: OciDescriptor): Promise<OciDescriptor[]> {
    if (isManifestType(desc.mediaType)) {
      const { config, layers } = await this.manifestOf(desc);
      return [config, ...layers];
    }
    if (isIndexType(desc.mediaType)) {
      const doc = (await this.document(desc)) as { manifests?: OciDescriptor[] | null };
      return doc.manifests ?? [];
    }
    return [];
  }

  private async manifestOf(desc: Descriptor): Promise<{ config: OciDescriptor; layers: OciDescriptor[] }> {
    const doc = (await this.document(desc)) as { config?: OciDescriptor; layers?: OciDescriptor[] | null };
    if (!doc.config || !isDigest(doc.config.digest)) throw new InvalidArgumentError(`manifest ${desc.digest}: no valid config`);
    return { config: doc.config, layers: doc.layers ?? [] };
  }

  /** A manifest or index from the store, parsed (bounded as on import). */
  private async document(desc: Descriptor): Promise<Record<string, unknown>> {
    const cached = this.json.get(desc.digest);
    if (cached) return cached as Record<string, unknown>;
    const bytes = await this.content.readAll(desc.digest, { maxBytes: MAX_JSON_BYTES, ...signalOf(this.opts) });
    let doc: unknown;
    try {
      doc = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new InvalidArgumentError(`${desc.mediaType} ${desc.digest}: malformed JSON: ${(err as Error).message}`);
    }
    if (typeof doc !== 'object' || doc === null) throw new InvalidArgumentError(`${desc.mediaType} ${desc.digest}: not a JSON object`);
    this.json.set(desc.digest, doc);
    return doc as Record<string, unknown>;
  }

  /** Every blob is in the store with the size its descriptor says, before anything is written. */
  async check(records: readonly ArchiveRecord[]): Promise<void> {
    const seen = new Set<string>();
    for (const r of records) {
      if (!r.digest || seen.has(r.digest)) continue;
      seen.add(r.digest);
      try {
        const info = await this.content.info(r.digest, this.opts);
        if (info.size !== r.size) {
          throw new FailedPreconditionError(`blob ${r.digest}: ${info.size} bytes in the store, ${r.size} in its descriptor`);
        }
      } catch (err) {
        if (isNotFound(err)) {
          throw new NotFoundError(
            `blob ${r.digest} is not in the content store: the image is incomplete (pull or import it again)`,
          );
        }
        throw err;
      }
    }
  }

  /** Records sorted by name (as containerd writes them), duplicates once. */
  async write(records: ArchiveRecord[], out: Writable): Promise<void> {
    const sorted = [...records].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const tar = new TarWriter(out);
    let last = '';
    for (const r of sorted) {
      if (r.name === last) continue;
      last = r.name;
      if (r.directory) await tar.directory(r.name, r.mode);
      else if (r.bytes) await tar.file(r.name, r.bytes.length, r.bytes, { mode: r.mode });
      else if (r.digest) await tar.file(r.name, r.size, this.verified(r.digest), { mode: r.mode });
    }
    await tar.finish();
  }

  /** A blob's bytes, checked against its digest as they go by. */
  private async *verified(digest: string): AsyncIterable<Buffer> {
    const algorithm = digest.slice(0, digest.indexOf(':'));
    const hash = createHash(algorithm);
    for await (const piece of this.content.read(digest, signalOf(this.opts))) {
      hash.update(piece);
      yield piece;
    }
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (actual !== digest) throw new FailedPreconditionError(`blob ${digest}: the store returned content with digest ${actual}`);
  }
}

function signalOf(opts: RequestOptions): RequestOptions {
  return opts.signal ? { signal: opts.signal } : {};
}
