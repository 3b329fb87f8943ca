import { type Descriptor, isNotFound, NotFoundError } from '@berth/plugin-api';
import { Readable } from 'node:stream';
import { childrenOf, type ManifestDescriptor } from './manifest.js';
import { isConfig, isIndex, isLayer, isManifest } from './media-types.js';
import { formatPlatform, parsePlatform, platformMatches } from './platform.js';
import type { ContentPort } from './ports.js';
import { type TransferKind, TransferTracker } from './progress.js';
import { Semaphore, type TransferOptions } from './pull.js';
import { type RegistryTarget, storesOf } from './registry-stores.js';
import { parseReference, type Reference } from './reference.js';
import { RegistryClient, sha256 } from './registry-client.js';
import { DigestMismatchError } from './registry-error.js';

export interface PushOptions extends TransferOptions {
  /** Push only this platform's manifest (it becomes what the tag names); default: the whole tree. */
  readonly platform?: string;
  /** Upload blobs in PATCH chunks of this many bytes; default one PUT per blob. */
  readonly chunkSize?: number;
}

export interface PushResult {
  /** What the remote reference now names. */
  readonly target: Descriptor;
  readonly reference: string;
  /** Blobs uploaded (those the registry had are not counted). */
  readonly blobsPushed: number;
}

/**
 * Push a local image to a registry, as `ctr images push`: walk its manifest
 * tree in the content store, upload every blob the repository lacks (HEAD,
 * then POST and PUT, or PATCH chunks), then the manifests bottom-up (children
 * by digest), and last the root under the reference's tag.
 */
export async function push(client: RegistryTarget, localName: string, ref: string, opts: PushOptions = {}): Promise<PushResult> {
  const stores = storesOf(client);
  const reference = parseReference(ref);
  const image = await stores.images.get(localName);
  const registry = new RegistryClient(reference.apiHost, {
    ...opts.registry,
    plainHttp: !!opts.plainHttp,
    skipVerify: !!opts.skipVerify,
    ...(opts.auth ? { credentials: opts.auth } : {}),
  });
  try {
    const pusher = new Pusher(stores.content, registry, reference, opts);
    let target: Descriptor = image.target;
    if (opts.platform) target = await pusher.platformManifest(target, opts.platform);
    await pusher.pushTree(target, true);
    return { target, reference: reference.toString(), blobsPushed: pusher.blobsPushed };
  } finally {
    registry.close();
  }
}

class Pusher {
  blobsPushed = 0;
  private readonly slots: Semaphore;
  private readonly blobs = new Map<string, Promise<void>>();

  constructor(
    private readonly content: ContentPort,
    private readonly registry: RegistryClient,
    private readonly reference: Reference,
    private readonly opts: PushOptions,
  ) {
    this.slots = new Semaphore(Math.max(1, opts.concurrency ?? 3));
  }

  async platformManifest(target: Descriptor, platformText: string): Promise<Descriptor> {
    const platform = parsePlatform(platformText);
    if (!isIndex(target.mediaType)) return target;
    const children = childrenOf(target, await this.readVerified(target));
    for (const c of children) {
      if (isManifest(c.mediaType) && platformMatches(platform, c.platform)) return c;
      if (isIndex(c.mediaType)) {
        const found = await this.platformManifest(c, platformText).catch(() => undefined);
        if (found && found !== c) return found;
      }
    }
    throw new NotFoundError(`no manifest for platform ${formatPlatform(platform)} in ${target.digest}`);
  }

  /** Children first (blobs in parallel, manifests by digest), then this manifest. */
  async pushTree(desc: Descriptor, root: boolean): Promise<void> {
    const tracker = new TransferTracker(desc.digest, isIndex(desc.mediaType) ? 'index' : 'manifest', desc.size, this.opts.onProgress);
    const data = await this.readVerified(desc);
    const children: ManifestDescriptor[] = childrenOf(desc, data);
    const results = await Promise.allSettled(
      children.map((c) => (isIndex(c.mediaType) || isManifest(c.mediaType) ? this.pushTree(c, false) : this.pushBlob(c))),
    );
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
    tracker.start('uploading', 0);
    const object = root ? (this.reference.tag ?? desc.digest) : desc.digest;
    if (root && this.reference.digest && this.reference.digest !== desc.digest) {
      throw new DigestMismatchError(this.reference.digest, desc.digest, `push to ${this.reference}`);
    }
    await this.registry.pushManifest(this.reference.repository, object, desc, data, this.signal());
    tracker.end('done');
  }

  private pushBlob(desc: Descriptor): Promise<void> {
    let p = this.blobs.get(desc.digest);
    if (!p) {
      p = this.slots.run(() => this.uploadBlob(desc));
      this.blobs.set(desc.digest, p);
    }
    return p;
  }

  private async uploadBlob(desc: Descriptor): Promise<void> {
    const kind: TransferKind = isLayer(desc.mediaType) ? 'layer' : isConfig(desc.mediaType) ? 'config' : 'blob';
    const tracker = new TransferTracker(desc.digest, kind, desc.size, this.opts.onProgress);
    tracker.waiting();
    const repo = this.reference.repository;
    try {
      await this.content.info(desc.digest);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`${this.reference}: ${kind} ${desc.digest} is not in the content store`);
      throw err;
    }
    if (await this.registry.hasBlob(repo, desc.digest, { ...this.signal(), push: true })) {
      tracker.end('exists');
      return;
    }
    tracker.start('uploading', 0);
    await this.registry.pushBlob(repo, desc, (offset) => Readable.from(this.content.read(desc.digest, offset)), {
      ...this.signal(),
      ...(this.opts.chunkSize ? { chunkSize: this.opts.chunkSize } : {}),
      onProgress: (sent) => tracker.progress(sent),
    });
    this.blobsPushed++;
    tracker.end('done');
  }

  private async readVerified(desc: Descriptor): Promise<Buffer> {
    const chunks: Uint8Array[] = [];
    try {
      for await (const c of this.content.read(desc.digest)) chunks.push(c);
    } catch (err) {
      if (isNotFound(err)) {
        throw new NotFoundError(
          `${desc.mediaType} ${desc.digest} is not in the content store (an index's other platforms? pull them with --all-platforms, or push one with --platform)`,
        );
      }
      throw err;
    }
    const data = Buffer.concat(chunks);
    const actual = sha256(data);
    if (desc.digest.startsWith('sha256:') && actual !== desc.digest) throw new DigestMismatchError(desc.digest, actual, 'local content');
    return data;
  }

  private signal(): { signal?: AbortSignal } {
    return this.opts.signal ? { signal: this.opts.signal } : {};
  }
}
