import {
  AlreadyExistsError,
  type Descriptor,
  errorKindOf,
  GcLabel,
  type Image,
  isAlreadyExists,
  isNotFound,
  type Labels,
  NotFoundError,
} from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import { appendDistributionSource, childGcLabels, childrenOf, DISTRIBUTION_SOURCE_PREFIX, type ManifestDescriptor } from './manifest.js';
import { isConfig, isIndex, isLayer, isManifest, refKeyPrefix } from './media-types.js';
import { DEFAULT_PLATFORM, formatPlatform, type Platform, parsePlatform, platformMatches } from './platform.js';
import type { ContentPort, IngestWriter, RegistryStores } from './ports.js';
import type { ProgressListener, TransferKind } from './progress.js';
import { TransferTracker } from './progress.js';
import { type RegistryTarget, storesOf } from './registry-stores.js';
import { parseReference, type Reference } from './reference.js';
import type { CredentialsProvider, RegistryCredentials } from './registry-auth.js';
import { RegistryClient, type RegistryClientOptions, sha256 } from './registry-client.js';
import { DigestMismatchError, RegistryError } from './registry-error.js';

/** Options shared by pull and push. */
export interface TransferOptions {
  /** HTTP instead of HTTPS (ctr's `--plain-http`). */
  readonly plainHttp?: boolean;
  /** Accept any TLS certificate (ctr's `--skip-verify`). */
  readonly skipVerify?: boolean;
  /** Credentials; none: anonymous. Used for basic auth and to get bearer tokens. */
  readonly auth?: RegistryCredentials | CredentialsProvider;
  /** More registry client settings (CA certificates, idle timeout). */
  readonly registry?: Omit<RegistryClientOptions, 'plainHttp' | 'skipVerify' | 'credentials'>;
  readonly onProgress?: ProgressListener;
  /** Blobs moved at once (default 3). */
  readonly concurrency?: number;
  readonly signal?: AbortSignal;
}

export interface PullOptions extends TransferOptions {
  /** `os/arch[/variant]` or a Platform; default linux/amd64. */
  readonly platform?: string | Platform;
  /** Fetch every manifest of an index, not just the platform's. */
  readonly allPlatforms?: boolean;
  /**
   * Do the work under this existing lease (default: the one the client
   * carries, if any) and leave it in place, so an interrupted pull's ingests
   * survive for the next try. Without one, a lease is made for the pull and
   * deleted at the end, with a synchronous garbage collection when the pull
   * failed.
   */
  readonly lease?: string;
  /** Attempts per blob after a network failure, each resuming where the ingest stands (default 3). */
  readonly retries?: number;
  /** Labels for the image record. */
  readonly labels?: Labels;
}

export interface PullResult {
  readonly image: Image;
  /** The manifests fetched for the chosen platform(s). */
  readonly manifests: readonly Descriptor[];
  /** Bytes downloaded (blobs already present count nothing). */
  readonly bytesFetched: number;
}

/** How long a pull's own lease lives if the client dies before deleting it (containerd's default). */
const LEASE_EXPIRY_MS = 24 * 60 * 60 * 1000;
/** Bytes gathered before one Content.Write WRITE (lock-step: fewer, larger messages go faster). */
const WRITE_CHUNK = 1024 * 1024;
/** containerd's labels.Validate limit for key plus value. */
const MAX_LABEL = 4096;

/**
 * Pull an image into the content store and name it, as `ctr images pull`
 * without unpacking: resolve the reference, fetch the index and the
 * platform's manifest, then config and layers in parallel, each verified
 * against its digest, labelled for the garbage collector the way
 * containerd's fetcher labels them, all under a lease.
 */
export async function pull(client: RegistryTarget, ref: string, opts: PullOptions = {}): Promise<PullResult> {
  const stores = storesOf(client);
  const reference = parseReference(ref);
  const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : (opts.platform ?? DEFAULT_PLATFORM);
  const registry = new RegistryClient(reference.apiHost, {
    ...opts.registry,
    plainHttp: !!opts.plainHttp,
    skipVerify: !!opts.skipVerify,
    ...(opts.auth ? { credentials: opts.auth } : {}),
  });
  // A lease given, or one the client already carries (BerthClient.withLease), is the caller's to delete.
  const given = opts.lease ?? stores.lease;
  const leaseId = given ?? (await stores.leases.create({ [GcLabel.expire]: new Date(Date.now() + LEASE_EXPIRY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z') }));
  let failed = true;
  try {
    const puller = new Puller(stores.withLease(leaseId).content, registry, reference, platform, opts);
    const target = await registry.resolve(reference, opts.signal ? { signal: opts.signal } : {});
    await puller.fetchAll(target);
    const image = await putImage(stores, { name: reference.toString(), target: plainDescriptor(target), ...(opts.labels ? { labels: opts.labels } : {}) });
    failed = false;
    return { image, manifests: puller.platformManifests, bytesFetched: puller.bytesFetched };
  } finally {
    registry.close();
    if (!given) {
      // A failed pull's content has no other holder: collect it now, so nothing of it stays behind.
      await stores.leases.delete(leaseId, { sync: failed }).catch(() => {});
    }
  }
}

/** Create the image, or point the existing one at the new target (and labels). */
async function putImage(stores: RegistryStores, image: { name: string; target: Descriptor; labels?: Labels }): Promise<Image> {
  try {
    return await stores.images.create(image);
  } catch (err) {
    if (!isAlreadyExists(err)) throw err;
    const paths = ['target', ...Object.keys(image.labels ?? {}).map((k) => `labels.${k}`)];
    return stores.images.update(image, paths);
  }
}

const plainDescriptor = (d: Descriptor): Descriptor => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  ...(d.annotations && Object.keys(d.annotations).length > 0 ? { annotations: d.annotations } : {}),
});

class Puller {
  bytesFetched = 0;
  readonly platformManifests: Descriptor[] = [];
  private readonly sourceKey: string;
  private readonly blobSlots: Semaphore;
  private readonly started = new Map<string, Promise<void>>();
  /** Aborted on the first failure, so the other transfers stop rather than run to no purpose. */
  private readonly failure = new AbortController();
  private firstError: unknown;
  private readonly combined: AbortSignal;

  constructor(
    private readonly content: ContentPort,
    private readonly registry: RegistryClient,
    private readonly reference: Reference,
    private readonly platform: Platform,
    private readonly opts: PullOptions,
  ) {
    this.sourceKey = `${DISTRIBUTION_SOURCE_PREFIX}${reference.hostname}`;
    this.blobSlots = new Semaphore(Math.max(1, opts.concurrency ?? 3));
    this.combined = opts.signal ? AbortSignal.any([opts.signal, this.failure.signal]) : this.failure.signal;
  }

  /** Fetch the tree under `target`; the error is the first one that happened, not a sibling's abort. */
  async fetchAll(target: Descriptor): Promise<void> {
    try {
      await this.fetch(target);
    } catch (err) {
      throw this.firstError ?? err;
    }
  }

  /** Fetch `desc` and what it needs, once per digest however often it is named. */
  fetch(desc: ManifestDescriptor): Promise<void> {
    let p = this.started.get(desc.digest);
    if (!p) {
      p = (isIndex(desc.mediaType) || isManifest(desc.mediaType) ? this.fetchTree(desc) : this.blobSlots.run(() => this.fetchBlob(desc))).catch(
        (err: unknown) => {
          if (this.firstError === undefined && !this.failure.signal.aborted) {
            this.firstError = err;
            this.failure.abort();
          }
          throw err;
        },
      );
      this.started.set(desc.digest, p);
    }
    return p;
  }

  private async fetchTree(desc: ManifestDescriptor): Promise<void> {
    const tracker = new TransferTracker(desc.digest, isIndex(desc.mediaType) ? 'index' : 'manifest', desc.size, this.opts.onProgress);
    const data = await this.manifestBytes(desc, tracker);
    const children = childrenOf(desc, data);
    const labels = { ...childGcLabels(children), [this.sourceKey]: this.reference.repository };
    await this.store(desc, data, labels, tracker);
    let next: ManifestDescriptor[] = children;
    if (isIndex(desc.mediaType)) {
      next = this.opts.allPlatforms ? children.filter((c) => isIndex(c.mediaType) || isManifest(c.mediaType)) : this.choose(desc, children);
    } else {
      this.platformManifests.push(plainDescriptor(desc));
    }
    // Every child starts now; a failure fails the pull once all have settled (no half-written ingest left open).
    const results = await Promise.allSettled(next.map((c) => this.fetch(c)));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /** The index entries for this platform: nested indexes always, and the first matching manifest. */
  private choose(index: Descriptor, children: readonly ManifestDescriptor[]): ManifestDescriptor[] {
    const nested = children.filter((c) => isIndex(c.mediaType));
    const manifests = children.filter((c) => isManifest(c.mediaType) && platformMatches(this.platform, c.platform));
    const exact = manifests.find((c) => (c.platform?.variant ?? '') === (this.platform.variant ?? '')) ?? manifests[0];
    if (!exact && nested.length === 0) {
      throw new NotFoundError(`${this.reference}: no manifest for platform ${formatPlatform(this.platform)} in index ${index.digest}`);
    }
    return [...nested, ...(exact ? [exact] : [])];
  }

  /** A manifest's bytes: from the content store when it is there, else from the registry; verified either way. */
  private async manifestBytes(desc: Descriptor, tracker: TransferTracker): Promise<Buffer> {
    try {
      await this.content.info(desc.digest);
      const chunks: Uint8Array[] = [];
      for await (const c of this.content.read(desc.digest)) chunks.push(c);
      const data = Buffer.concat(chunks);
      if (sha256(data) === desc.digest) return data;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    tracker.start('downloading', 0);
    const { data } = await this.withRetries(() => this.registry.fetchManifest(this.reference.repository, desc.digest, { ...this.signal(), expected: desc }));
    this.bytesFetched += data.length;
    return data;
  }

  /** Commit a manifest with its labels; when it is already there, add the labels to it. */
  private async store(desc: Descriptor, data: Buffer, labels: Labels, tracker: TransferTracker): Promise<void> {
    const ref = ingestRef(desc);
    let w: IngestWriter;
    try {
      w = await openWriter(this.content, ref, desc);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      await this.label(desc.digest, labels);
      tracker.end('exists');
      return;
    }
    try {
      // containerd answers a blob held by another namespace with an ingest already complete.
      const shared = w.offset === desc.size;
      if (w.offset > desc.size) throw new DigestMismatchError(desc.digest, `(an ingest of ${w.offset} bytes)`, 'manifest');
      if (!shared) await w.write(data.subarray(w.offset));
      await commit(this.content, w, ref, desc, labels);
      tracker.end(shared ? 'exists' : 'done');
    } catch (err) {
      if (isAlreadyExists(err)) {
        await this.label(desc.digest, labels);
        tracker.end('exists');
        return;
      }
      tracker.end('failed');
      throw err;
    } finally {
      await w.close().catch(() => {});
    }
  }

  /** Set labels on existing content, merging the distribution source with the repositories it already names. */
  private async label(digest: string, labels: Labels): Promise<void> {
    const info = await this.content.info(digest);
    const merged: Record<string, string> = { ...labels };
    if (labels[this.sourceKey] !== undefined) {
      merged[this.sourceKey] = appendDistributionSource(info.labels[this.sourceKey], this.reference.repository);
      if (this.sourceKey.length + (merged[this.sourceKey] as string).length > MAX_LABEL) delete merged[this.sourceKey];
    }
    const keys = Object.keys(merged).filter((k) => info.labels[k] !== merged[k]);
    if (keys.length === 0) return;
    await this.content.update(
      digest,
      merged,
      keys.map((k) => `labels.${k}`),
    );
  }

  /**
   * Download a config or layer into its ingest, resuming from the ingest's
   * offset (a Range request) after a network failure, and commit it with
   * the expected digest and size. Bytes that do not match are never
   * committed: the ingest is aborted and the pull fails.
   */
  private async fetchBlob(desc: ManifestDescriptor): Promise<void> {
    const kind: TransferKind = isLayer(desc.mediaType) ? 'layer' : isConfig(desc.mediaType) ? 'config' : 'blob';
    const tracker = new TransferTracker(desc.digest, kind, desc.size, this.opts.onProgress);
    const labels: Labels = { [this.sourceKey]: this.reference.repository };
    const ref = ingestRef(desc);
    const retries = this.opts.retries ?? 3;
    tracker.waiting();
    for (let attempt = 0; ; attempt++) {
      this.combined.throwIfAborted();
      let w: IngestWriter;
      try {
        w = await openWriter(this.content, ref, desc);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        await this.label(desc.digest, labels);
        tracker.end('exists');
        return;
      }
      try {
        let offset = w.offset;
        const shared = attempt === 0 && offset === desc.size;
        if (offset > desc.size && attempt < retries) {
          // Not a prefix of this blob (a stale ingest under its ref): start over.
          await w.close();
          await this.content.abort(ref);
          continue;
        }
        if (offset > desc.size) throw new DigestMismatchError(desc.digest, `(an ingest of ${offset} bytes)`, 'blob');
        if (offset < desc.size) {
          tracker.start('downloading', offset);
          const res = await this.registry.fetchBlob(this.reference.repository, desc, offset, this.signal());
          // Hash here only from byte 0; a resumed ingest is verified by the store at commit.
          const hash = offset === 0 && desc.digest.startsWith('sha256:') ? createHash('sha256') : undefined;
          let pending: Buffer[] = [];
          let pendingBytes = 0;
          const flush = async () => {
            if (pendingBytes === 0) return;
            const data = pending.length === 1 ? (pending[0] as Buffer) : Buffer.concat(pending);
            pending = [];
            pendingBytes = 0;
            await w.write(data);
            this.bytesFetched += data.length;
            tracker.progress(offset);
          };
          try {
            for await (const chunk of res.body as AsyncIterable<Buffer>) {
              offset += chunk.length;
              if (offset > desc.size) throw new DigestMismatchError(desc.digest, `more than ${desc.size} bytes`, 'blob');
              hash?.update(chunk);
              pending.push(chunk);
              pendingBytes += chunk.length;
              if (pendingBytes >= WRITE_CHUNK) await flush();
            }
          } catch (err) {
            res.body.destroy();
            // Keep what arrived: the next attempt resumes after it.
            if (!(err instanceof DigestMismatchError)) await flush().catch(() => {});
            throw asNetworkError(err, desc);
          }
          await flush();
          if (offset < desc.size) throw new RegistryError(`blob ${desc.digest}: connection closed at ${offset} of ${desc.size} bytes`);
          const actual = hash ? `sha256:${hash.digest('hex')}` : undefined;
          if (actual && actual !== desc.digest) throw new DigestMismatchError(desc.digest, actual, 'blob');
        }
        await commit(this.content, w, ref, desc, labels);
        tracker.end(shared ? 'exists' : 'done');
        return;
      } catch (err) {
        if (isAlreadyExists(err)) {
          await this.label(desc.digest, labels);
          tracker.end('exists');
          return;
        }
        if (err instanceof DigestMismatchError) {
          // Drop the bad bytes so no later try resumes on them; the writer lets go of the ref first.
          await w.close().catch(() => {});
          await this.content.abort(ref).catch(() => {});
        }
        if (err instanceof RegistryError && err.retryable && attempt < retries && !this.combined.aborted) {
          await w.close().catch(() => {});
          await sleep(Math.min(2000, 100 * 2 ** attempt));
          continue;
        }
        tracker.end('failed');
        throw err;
      } finally {
        await w.close().catch(() => {});
      }
    }
  }

  private async withRetries<T>(fn: () => Promise<T>): Promise<T> {
    const retries = this.opts.retries ?? 3;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof RegistryError && err.retryable) || attempt >= retries || this.combined.aborted) throw err;
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  private signal(): { signal: AbortSignal } {
    return { signal: this.combined };
  }
}

/** containerd's remotes.MakeRefKey: an interrupted ctr pull and ours resume the same ingest. */
export function ingestRef(desc: Descriptor): string {
  const name = desc.annotations?.['org.opencontainers.image.ref.name'];
  return `${refKeyPrefix(desc.mediaType)}-${name ? `${name}@` : ''}${desc.digest}`;
}

/** Open an ingest, waiting out another writer's lock on it as containerd's content.OpenWriter does. */
async function openWriter(content: ContentPort, ref: string, desc: Descriptor): Promise<IngestWriter> {
  for (let wait = 16; ; wait = Math.min(wait * 2, 2048)) {
    try {
      return await content.writer(ref, { total: desc.size, expected: desc.digest });
    } catch (err) {
      // "ref locked": another pull of the same blob is writing it.
      if (errorKindOf(err) !== 'unavailable' || !/locked/i.test((err as Error).message) || wait >= 2048) throw err;
      await sleep(wait);
    }
  }
}

/** Commit; a store's digest or size refusal becomes a DigestMismatchError after the ingest is dropped. */
async function commit(content: ContentPort, w: IngestWriter, ref: string, desc: Descriptor, labels: Labels): Promise<void> {
  try {
    await w.commit(desc.size, desc.digest, labels);
  } catch (err) {
    if (isAlreadyExists(err)) throw new AlreadyExistsError(desc.digest);
    if (errorKindOf(err) === 'failed-precondition') {
      await w.close().catch(() => {});
      await content.abort(ref).catch(() => {});
      throw new DigestMismatchError(desc.digest, `content the store refused (${(err as Error).message})`, 'blob');
    }
    throw err;
  }
}

function asNetworkError(err: unknown, desc: Descriptor): unknown {
  if (err instanceof RegistryError || err instanceof DigestMismatchError || errorKindOf(err)) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError') return err;
  return new RegistryError(`blob ${desc.digest}: ${e?.code ? `${e.code} ` : ''}${e?.message ?? String(err)}`, undefined, [], { cause: err });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** At most `n` tasks at once. */
export class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly n: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.n) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}
