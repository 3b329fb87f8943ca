import {
  type ContentStore,
  errorMessage,
  type GarbageCollector,
  GcLabel,
  type GcStats,
  isDigest,
  isNotFound,
  type Logger,
  type MetadataStore,
  type ReadTx,
  type WriteTx,
} from '@berth/plugin-api';
import {
  type BlobRecord,
  blobKey,
  blobsPrefix,
  type ImageRecord,
  imagesPrefix,
  type LeaseRecord,
  leasesPrefix,
  NAMESPACES_PREFIX,
  parseJSON,
} from '../metadata/keys.js';

export interface GcOptions {
  /** Wait after a schedule() so bursts of deletions share one collection. */
  readonly scheduleDelayMs: number;
}

/**
 * Mark and sweep, as containerd's collector: roots are images, unexpired
 * leases and blobs labelled `containerd.io/gc.root`; marks follow
 * `containerd.io/gc.ref.content*` labels within a namespace; unmarked blob
 * records go, expired leases go, and then blobs no namespace records any
 * more leave the store. The whole run holds the metadata write lock, and
 * content commits record blobs under that same lock, so a blob being
 * committed is never swept.
 */
export class MetadataGarbageCollector implements GarbageCollector {
  private running: Promise<GcStats> = Promise.resolve(emptyStats());
  private queued: Promise<GcStats> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly meta: MetadataStore,
    private readonly content: ContentStore | undefined,
    private readonly log: Logger,
    private readonly opts: GcOptions,
  ) {}

  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.collect().catch((err) => this.log.error('garbage collection failed', { error: errorMessage(err) }));
    }, this.opts.scheduleDelayMs);
    this.timer.unref();
  }

  /** Runs after any collection in progress, so whatever was deleted before the call is swept by it. */
  collect(): Promise<GcStats> {
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        this.running = this.run();
        return this.running;
      });
    return this.queued;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async run(): Promise<GcStats> {
    const started = performance.now();
    const stats = await this.meta.exclusive(async (locked) => {
      const swept = await locked.update((tx) => sweepMetadata(tx, new Date()));
      let blobsDeleted = 0;
      if (this.content) {
        const unreferenced: string[] = [];
        await this.content.walk((info) => {
          if (!swept.referenced.has(info.digest)) unreferenced.push(info.digest);
        });
        for (const digest of unreferenced) {
          try {
            await this.content.delete(digest);
            blobsDeleted++;
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
        }
      }
      return { ...swept.stats, blobsDeleted };
    });
    const result = { ...stats, durationMs: performance.now() - started };
    if (result.contentDeleted + result.blobsDeleted + result.leasesExpired > 0) this.log.info('garbage collected', { ...result });
    return result;
  }
}

function emptyStats(): GcStats {
  return { contentDeleted: 0, blobsDeleted: 0, leasesExpired: 0, snapshotsDeleted: 0, durationMs: 0 };
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

/** Mark within each namespace and delete what is unreachable; returns every digest still recorded anywhere. */
async function sweepMetadata(tx: WriteTx, now: Date) {
  let contentDeleted = 0;
  let leasesExpired = 0;
  const referenced = new Set<string>();
  for (const ns of await namespaces(tx)) {
    const blobs = new Map<string, BlobRecord>();
    for await (const [key, value] of tx.range(blobsPrefix(ns))) blobs.set(key[4] ?? '', parseJSON<BlobRecord>(value));

    const marked = new Set<string>();
    const queue: string[] = [];
    const mark = (digest: string) => {
      if (!marked.has(digest)) {
        marked.add(digest);
        queue.push(digest);
      }
    };

    for await (const [, value] of tx.range(imagesPrefix(ns))) mark(parseJSON<ImageRecord>(value).target.digest);
    for (const [digest, record] of blobs) if (record.labels[GcLabel.root] !== undefined) mark(digest);
    for await (const [key, value] of tx.range(leasesPrefix(ns))) {
      const id = key[3] ?? '';
      if (key.length === 4) {
        if (isExpired(parseJSON<LeaseRecord>(value).labels, now)) {
          for await (const [k] of tx.range(key)) tx.del(k);
          tx.del(key);
          leasesExpired++;
        }
      } else if (key[4] === 'r' && key[5] === 'content' && key[6]) {
        const lease = await tx.getJSON<LeaseRecord>(['v1', ns, 'leases', id]);
        if (lease && !isExpired(lease.labels, now)) mark(key[6]);
      }
    }

    while (queue.length > 0) {
      const digest = queue.pop() as string;
      const record = blobs.get(digest);
      if (!record) continue;
      for (const [label, value] of Object.entries(record.labels)) {
        if (label.startsWith(GcLabel.refContentPrefix) && isDigest(value)) mark(value);
      }
    }

    for (const digest of blobs.keys()) {
      if (marked.has(digest)) referenced.add(digest);
      else {
        tx.del(blobKey(ns, digest));
        contentDeleted++;
      }
    }
  }
  return { referenced, stats: { contentDeleted, leasesExpired, snapshotsDeleted: 0 } };
}
