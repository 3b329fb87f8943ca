import { type Descriptor, InvalidArgumentError, isAlreadyExists } from '@berth/plugin-api';
import { randomBytes } from 'node:crypto';
import type { BerthClient } from './berth-client.js';
import type { RequestOptions } from './client-context.js';
import { DiffClient } from './diff-client.js';
import { isLayerType } from './oci/media-types.js';
import { type OciPlatform, parsePlatform } from './oci/platforms.js';
import { DEFAULT_SNAPSHOTTER_ID, SNAPSHOT_REF_LABEL, SnapshotsClient } from './snapshots-client.js';
import { chainId, type ResolvedImage, resolveImage } from './spec/image-config.js';

/** The content label on an image config that keeps its unpacked snapshots from garbage collection. */
export const snapshotGcLabel = (snapshotter: string): string => `containerd.io/gc.ref.snapshot.${snapshotter}`;

export interface UnpackOptions extends RequestOptions {
  /** Default `overlayfs`. */
  readonly snapshotter?: string;
  /** `os/arch[/variant]` (or parsed); default this host's. */
  readonly platform?: string | OciPlatform;
  /** Called as each layer is applied (or found already unpacked). */
  readonly onLayer?: (layer: UnpackedLayer) => void;
}

export interface UnpackedLayer {
  readonly layer: Descriptor;
  readonly diffId: string;
  readonly chainId: string;
  /** False when the committed snapshot was already there. */
  readonly applied: boolean;
}

export interface UnpackResult {
  readonly image: ResolvedImage;
  readonly snapshotter: string;
  /** The committed snapshot the image's layers end in (what containers are prepared on). */
  readonly chainId: string;
  readonly layers: readonly UnpackedLayer[];
}

/** The manifest's layers, which must match the config's diff IDs one to one. */
async function manifestLayers(client: BerthClient, image: ResolvedImage, opts: RequestOptions): Promise<Descriptor[]> {
  const bytes = await client.content.readAll(image.manifest.digest, { ...opts, maxBytes: 4 * 1024 * 1024 });
  let layers: Descriptor[];
  try {
    layers = (JSON.parse(bytes.toString('utf8')) as { layers?: Descriptor[] | null }).layers ?? [];
  } catch (err) {
    throw new InvalidArgumentError(`manifest ${image.manifest.digest}: malformed JSON: ${(err as Error).message}`);
  }
  if (layers.length !== image.diffIds.length) {
    throw new InvalidArgumentError(
      `image ${image.name}: manifest has ${layers.length} layers but config has ${image.diffIds.length} diff IDs`,
    );
  }
  for (const l of layers) {
    if (!isLayerType(l.mediaType)) throw new InvalidArgumentError(`image ${image.name}: unsupported layer media type ${l.mediaType}`);
  }
  return layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: Number(l.size), ...(l.annotations ? { annotations: l.annotations } : {}) }));
}

/**
 * Unpack one layer as containerd's unpacker does: an active snapshot
 * `extract-<random>-<chainID>` on the parent chain, the layer applied by the
 * daemon's differ, its diff ID checked, then committed as `chainID`. A
 * concurrent unpacker that got there first (AlreadyExists) wins.
 */
async function unpackLayer(
  snapshots: SnapshotsClient,
  diff: DiffClient,
  layer: Descriptor,
  diffId: string,
  chain: string,
  parent: string,
  opts: RequestOptions,
): Promise<boolean> {
  for (let attempt = 0; ; attempt++) {
    if (await snapshots.find(chain, opts)) return false;
    const key = `extract-${process.hrtime()[1]}-${randomBytes(4).toString('hex')} ${chain}`;
    const labels = { [SNAPSHOT_REF_LABEL]: chain };
    let mounts: Awaited<ReturnType<SnapshotsClient['prepare']>>;
    try {
      mounts = await snapshots.prepare(key, parent, labels, opts);
    } catch (err) {
      // Another unpacker holds the key: wait for its commit, as containerd does by stat and retry.
      if (isAlreadyExists(err) && attempt < 3) continue;
      throw err;
    }
    try {
      const applied = await diff.apply(layer, mounts, opts);
      if (applied.digest !== diffId) {
        throw new InvalidArgumentError(
          `layer ${layer.digest}: wrong diff id calculated on extraction ${JSON.stringify(applied.digest)}, expected ${JSON.stringify(diffId)} (the image config does not match its layers)`,
        );
      }
      try {
        await snapshots.commit(chain, key, labels, opts);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        // Committed meanwhile by someone else: theirs is as good as ours.
        await snapshots.remove(key, opts).catch(() => {});
        return false;
      }
      return true;
    } catch (err) {
      await snapshots.remove(key).catch(() => {});
      throw err;
    }
  }
}

/**
 * Unpack `imageName` into snapshots, as containerd's client `image.Unpack`:
 * each layer becomes the committed snapshot named by its chain ID (reused
 * when already there), then the image config is labelled
 * `containerd.io/gc.ref.snapshot.<snapshotter>=<top chain ID>` so garbage
 * collection keeps them. All under one lease, so nothing half-made is lost
 * to GC mid-way or outlives a failure.
 *
 * Layers go one after another: each apply needs its parent committed, and
 * the daemon reads and decompresses the blob inside Diff.Apply, so the
 * client has nothing to fetch ahead of it (the layers are already in the
 * content store).
 */
export async function unpack(client: BerthClient, imageName: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const req: RequestOptions = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeout ? { timeout: opts.timeout } : {}) };
  const snapshotter = opts.snapshotter || DEFAULT_SNAPSHOTTER_ID;
  const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform;
  const image = await client.images.get(imageName, req);
  const resolved = await resolveImage(client.content, image, { ...req, ...(platform ? { platform } : {}) });
  const layers = await manifestLayers(client, resolved, req);
  return client.withLease(async (leased) => {
    const snapshots = new SnapshotsClient(leased.context, { snapshotter });
    const diff = new DiffClient(leased.context);
    const done: UnpackedLayer[] = [];
    let parent = '';
    for (const [i, layer] of layers.entries()) {
      const diffId = resolved.diffIds[i] ?? '';
      const chain = chainId(resolved.diffIds.slice(0, i + 1));
      const applied = await unpackLayer(snapshots, diff, layer, diffId, chain, parent, req);
      const entry = { layer, diffId, chainId: chain, applied };
      done.push(entry);
      opts.onLayer?.(entry);
      parent = chain;
    }
    if (resolved.chainId) {
      const label = snapshotGcLabel(snapshotter);
      await leased.content.update(resolved.config.digest, { [label]: resolved.chainId }, [`labels.${label}`], req);
    }
    return { image: resolved, snapshotter, chainId: resolved.chainId, layers: done };
  }, req);
}

/** Whether the image's top snapshot is committed in `snapshotter` (as `ctr images check` asks). */
export async function isUnpacked(
  client: BerthClient,
  imageName: string,
  opts: RequestOptions & { readonly snapshotter?: string; readonly platform?: string | OciPlatform } = {},
): Promise<boolean> {
  const req: RequestOptions = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.timeout ? { timeout: opts.timeout } : {}) };
  const platform = typeof opts.platform === 'string' ? parsePlatform(opts.platform) : opts.platform;
  const resolved = await resolveImage(client.content, await client.images.get(imageName, req), { ...req, ...(platform ? { platform } : {}) });
  if (!resolved.chainId) return true;
  return !!(await new SnapshotsClient(client.context, { snapshotter: opts.snapshotter ?? DEFAULT_SNAPSHOTTER_ID }).find(resolved.chainId, req));
}
