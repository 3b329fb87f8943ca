import {
  type ContentStore,
  errorMessage,
  type GarbageCollector,
  type GcDirty,
  GcLabel,
  type GcStats,
  isDigest,
  isNotFound,
  type Logger,
  type MetadataStore,
  type ReadTx,
  type Snapshotter,
  type WriteTx,
} from '@berth/plugin-api';
import {
  allSnapshotsPrefix,
  type BlobRecord,
  blobKey,
  blobsPrefix,
  type ContainerRecord,
  containersPrefix,
  type ImageRecord,
  type IngestRecord,
  ingestsPrefix,
  imagesPrefix,
  type LeaseRecord,
  leasesPrefix,
  NAMESPACES_PREFIX,
  parseJSON,
  type SnapshotRecord,
  snapshotKey,
} from '../metadata/keys.js';
import { CONTAINERD_PACING, GcPacer, type PacerOptions } from './pacer.js';

/** How scheduled collections are paced (see GcPacer); unset, containerd's defaults. */
export type GcOptions = Pick<PacerOptions, 'scheduleDelayMs'> & Partial<PacerOptions>;

/**
 * Mark and sweep, as containerd's collector: roots are images, containers, unexpired
 * leases, and blobs and snapshots labelled `containerd.io/gc.root`; marks
 * follow `containerd.io/gc.ref.content*` and `…gc.ref.snapshot.<name>`
 * labels and snapshot parents within a namespace; unmarked records go,
 * expired leases go, and then blobs and snapshots no namespace records any
 * more leave their stores. The whole run holds the metadata write lock, and
 * content commits record blobs under that same lock, so a blob being
 * committed is never swept.
 *
 * As containerd's, a scheduled collection walks a backend (the content
 * store, a snapshotter) only when it is dirty: the metadata sweep deleted
 * records of it, or a deletion said so (GcDirty). The first collection and
 * every collect() walk them all, for what a crash or a failed call left.
 */
export class MetadataGarbageCollector implements GarbageCollector {
  private running: Promise<GcStats> = Promise.resolve(emptyStats());
  private queued: Promise<GcStats> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the pending timer fires, on performance.now()'s clock. */
  private timerAt = 0;
  private readonly pacer: GcPacer;
  private contentDirty = true;
  private readonly dirtySnapshotters: Set<string>;
  /** collect() asked for the next run: every backend is walked. */
  private walkAll = false;

  constructor(
    private readonly meta: MetadataStore,
    private readonly content: ContentStore | undefined,
    private readonly log: Logger,
    opts: GcOptions,
    private readonly snapshotters: ReadonlyMap<string, Snapshotter> = new Map(),
  ) {
    this.pacer = new GcPacer({ ...CONTAINERD_PACING, ...opts });
    this.dirtySnapshotters = new Set(snapshotters.keys());
  }

  schedule(dirty?: GcDirty): void {
    this.markDirty(dirty);
    const at = this.pacer.deleted(performance.now());
    if (this.timer) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.next().catch((err) => this.log.error('garbage collection failed', { error: errorMessage(err) }));
      },
      Math.max(0, at - performance.now()),
    );
    this.timer.unref();
  }

  /** Runs after any collection in progress, so whatever was deleted before the call is swept by it. */
  collect(): Promise<GcStats> {
    this.walkAll = true;
    return this.next();
  }

  private markDirty(dirty: GcDirty | undefined): void {
    if (dirty?.content) this.contentDirty = true;
    for (const name of dirty?.snapshotters ?? []) this.dirtySnapshotters.add(name);
  }

  /** The run after the one in progress, shared by every caller until it starts. */
  private next(): Promise<GcStats> {
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        this.running = this.run();
        return this.running;
      });
    return this.queued;
  }

  /**
   * Remove every backend snapshot no namespace records, children before
   * parents (a snapshotter refuses to remove a parent first).
   */
  private async sweepSnapshotters(referenced: Referenced, names: Iterable<string>): Promise<number> {
    let removed = 0;
    for (const name of names) {
      const snapshotter = this.snapshotters.get(name);
      if (!snapshotter) continue;
      const keep = referenced.snapshots.get(name) ?? new Set<string>();
      const parentOf = new Map<string, string | undefined>();
      await snapshotter.walk((info) => {
        parentOf.set(info.name, info.parent);
      });
      // Anything a kept snapshot stands on is kept too.
      const kept = new Set<string>();
      for (const key of keep) {
        for (let k: string | undefined = key; k && !kept.has(k); k = parentOf.get(k)) kept.add(k);
      }
      const doomed = [...parentOf.keys()].filter((k) => !kept.has(k));
      const depth = (k: string) => {
        let d = 0;
        for (let p = parentOf.get(k); p; p = parentOf.get(p)) d++;
        return d;
      };
      doomed.sort((a, b) => depth(b) - depth(a));
      for (const key of doomed) {
        try {
          await snapshotter.remove(key);
          removed++;
        } catch (err) {
          if (!isNotFound(err)) this.log.warn('snapshot not removed', { snapshotter: name, key, error: errorMessage(err) });
        }
      }
    }
    return removed;
  }

  /** No more scheduled collections; resolves once the one in progress (if any) has finished. */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await (this.queued ?? this.running).catch(() => undefined);
  }

  private async run(): Promise<GcStats> {
    const abortIngest = async (backendRef: string): Promise<boolean> => {
      if (!this.content) return true;
      try {
        await this.content.abort(backendRef);
        return true;
      } catch (err) {
        if (isNotFound(err)) return true;
        // A writer still has it open: it is in use, not abandoned.
        return false;
      }
    };
    const result = await this.meta.exclusive(async (locked) => {
      // Under the lock: every deletion committed so far is this run's to sweep.
      const started = performance.now();
      this.pacer.started();
      const walkAll = this.walkAll;
      this.walkAll = false;
      const contentDirty = walkAll || this.contentDirty;
      const snapshotters = new Set(walkAll ? this.snapshotters.keys() : this.dirtySnapshotters);
      this.contentDirty = false;
      this.dirtySnapshotters.clear();
      try {
        const swept = await locked.update((tx) => sweepMetadata(tx, new Date(), abortIngest));
        for (const name of swept.snapshottersSwept) snapshotters.add(name);
        const snapshotsDeleted = await this.sweepSnapshotters(swept.referenced, snapshotters);
        const blobsDeleted =
          contentDirty || swept.stats.contentDeleted > 0 ? await this.sweepContent(swept.referenced.blobs) : 0;
        const ended = performance.now();
        this.pacer.finished(ended - started, ended);
        return { ...swept.stats, blobsDeleted, snapshotsDeleted, durationMs: ended - started };
      } catch (err) {
        // The next run walks them again.
        this.markDirty({ content: contentDirty, snapshotters: [...snapshotters] });
        throw err;
      }
    });
    const removed =
      result.contentDeleted + result.blobsDeleted + result.leasesExpired + result.snapshotsDeleted + result.ingestsAborted;
    (removed > 0 ? this.log.info : this.log.debug)('garbage collected', { ...result });
    return result;
  }

  /** Delete every blob of the content store that no namespace records. */
  private async sweepContent(referenced: ReadonlySet<string>): Promise<number> {
    if (!this.content) return 0;
    const unreferenced: string[] = [];
    await this.content.walk((info) => {
      if (!referenced.has(info.digest)) unreferenced.push(info.digest);
    });
    let deleted = 0;
    for (const digest of unreferenced) {
      try {
        await this.content.delete(digest);
        deleted++;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return deleted;
  }
}

function emptyStats(): GcStats {
  return { contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, ingestsAborted: 0, durationMs: 0 };
}

async function namespaces(tx: ReadTx): Promise<string[]> {
  const out: string[] = [];
  for await (const [key] of tx.range(NAMESPACES_PREFIX)) out.push(key[1] ?? '');
  return out;
}

function isExpired(labels: Record<string, string>, now: Date): boolean {
  const expire = labels[GcLabel.expire];
  if (!expire) return false;
  const at = Date.parse(expire);
  return !Number.isNaN(at) && at <= now.getTime();
}

/** What a collection keeps: blob digests and backend snapshot keys still recorded by some namespace. */
export interface Referenced {
  readonly blobs: Set<string>;
  /** snapshotter → backend keys. */
  readonly snapshots: Map<string, Set<string>>;
}

/**
 * Mark within each namespace and delete the records of what is unreachable.
 * Nodes are blobs (`c:<digest>`) and snapshots (`s:<snapshotter>:<key>`);
 * edges are containerd's gc.ref labels and snapshot parents.
 */
async function sweepMetadata(tx: WriteTx, now: Date, abortIngest: (backendRef: string) => Promise<boolean>) {
  let contentDeleted = 0;
  let leasesExpired = 0;
  let snapshotsDeleted = 0;
  let ingestsAborted = 0;
  const referenced: Referenced = { blobs: new Set(), snapshots: new Map() };
  /** Snapshotters some of whose records were deleted: their backends hold snapshots to remove. */
  const snapshottersSwept = new Set<string>();
  for (const ns of await namespaces(tx)) {
    const blobs = new Map<string, BlobRecord>();
    for await (const [key, value] of tx.range(blobsPrefix(ns))) blobs.set(key[4] ?? '', parseJSON<BlobRecord>(value));
    const snapshots = new Map<string, SnapshotRecord>();
    for await (const [key, value] of tx.range(allSnapshotsPrefix(ns))) {
      snapshots.set(snapshotNode(key[3] ?? '', key[4] ?? ''), parseJSON<SnapshotRecord>(value));
    }

    const marked = new Set<string>();
    const queue: string[] = [];
    const mark = (node: string) => {
      if (!marked.has(node)) {
        marked.add(node);
        queue.push(node);
      }
    };
    const markLabels = (labels: Record<string, string>) => {
      for (const [label, value] of Object.entries(labels)) {
        if (label.startsWith(GcLabel.refContentPrefix) && isDigest(value)) mark(`c:${value}`);
        else if (label.startsWith(GcLabel.refSnapshotPrefix)) {
          // containerd.io/gc.ref.snapshot.<snapshotter>[/<anything>] = <key>
          const snapshotter = label.slice(GcLabel.refSnapshotPrefix.length).split('/')[0] ?? '';
          if (snapshotter && value) mark(snapshotNode(snapshotter, value));
        }
      }
    };

    for await (const [, value] of tx.range(imagesPrefix(ns))) mark(`c:${parseJSON<ImageRecord>(value).target.digest}`);
    // Containers hold their snapshot (not their image's content) and whatever their labels name.
    for await (const [, value] of tx.range(containersPrefix(ns))) {
      const container = parseJSON<ContainerRecord>(value);
      if (container.snapshotter && container.snapshotKey) mark(snapshotNode(container.snapshotter, container.snapshotKey));
      markLabels(container.labels);
    }
    for (const [digest, record] of blobs) if (record.labels[GcLabel.root] !== undefined) mark(`c:${digest}`);
    for (const [node, record] of snapshots) if (record.labels[GcLabel.root] !== undefined) mark(node);
    for await (const [key, value] of tx.range(leasesPrefix(ns))) {
      if (key.length === 4) {
        if (isExpired(parseJSON<LeaseRecord>(value).labels, now)) {
          for await (const [k] of tx.range(key)) tx.del(k);
          tx.del(key);
          leasesExpired++;
        }
        continue;
      }
      const [, , , id = '', r, type = '', resource = ''] = key;
      if (r !== 'r' || !resource) continue;
      const lease = await tx.getJSON<LeaseRecord>(['v1', ns, 'leases', id]);
      if (!lease || isExpired(lease.labels, now)) continue;
      if (type === 'content') mark(`c:${resource}`);
      else if (type === 'ingests') mark(`i:${resource}`);
      else if (type.startsWith('snapshots/')) mark(snapshotNode(type.slice('snapshots/'.length), resource));
    }

    while (queue.length > 0) {
      const node = queue.pop() as string;
      if (node.startsWith('c:')) {
        const record = blobs.get(node.slice(2));
        if (record) markLabels(record.labels);
      } else {
        const record = snapshots.get(node);
        if (!record) continue;
        markLabels(record.labels);
        if (record.parent) mark(snapshotNode(node.split(':')[1] ?? '', record.parent));
      }
    }

    for (const digest of blobs.keys()) {
      if (marked.has(`c:${digest}`)) referenced.blobs.add(digest);
      else {
        tx.del(blobKey(ns, digest));
        contentDeleted++;
      }
    }
    // Ingests: kept while a lease holds them or, outside leases, until they expire; others are aborted.
    for await (const [key, value] of tx.range(ingestsPrefix(ns))) {
      const ref = key[4] ?? '';
      const record = parseJSON<IngestRecord>(value);
      const expired = record.expireAt ? Date.parse(record.expireAt) <= now.getTime() : true;
      if (marked.has(`i:${ref}`) || !expired) continue;
      if (await abortIngest(record.backendRef)) {
        tx.del(key);
        ingestsAborted++;
      }
    }
    for (const [node, record] of snapshots) {
      const [, snapshotter = '', ...rest] = node.split(':');
      if (marked.has(node)) {
        const keys = referenced.snapshots.get(snapshotter) ?? new Set<string>();
        keys.add(record.backendKey);
        referenced.snapshots.set(snapshotter, keys);
      } else {
        tx.del(snapshotKey(ns, snapshotter, rest.join(':')));
        snapshottersSwept.add(snapshotter);
        snapshotsDeleted++;
      }
    }
  }
  return { referenced, snapshottersSwept, stats: { contentDeleted, leasesExpired, snapshotsDeleted, ingestsAborted } };
}

/** Snapshotter ids never contain ':', so the node name splits back unambiguously. */
function snapshotNode(snapshotter: string, key: string): string {
  return `s:${snapshotter}:${key}`;
}
