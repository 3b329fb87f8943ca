import {
  AlreadyExistsError,
  applyLabelPaths,
  dropEmptyLabels,
  type ContentIngest,
  type ContentInfo,
  type ContentService,
  ContentStore,
  EventExchange,
  FailedPreconditionError,
  type FieldAdaptor,
  GarbageCollector,
  type IngestStatus,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  labelAdaptor,
  type Labels,
  MetadataStore,
  NotFoundError,
  parseFilters,
  type RequestContext,
  Topic,
  validateDigest,
  validateLabels,
  type WriterOptions,
  type WriteTx,
  type ContentWriter,
} from '@berth/plugin-api';
import { inject, injectable, optional } from 'inversify';
import { fstat, read } from 'node:fs';
import { promisify } from 'node:util';
import {
  backendRef,
  type BlobRecord,
  blobKey,
  blobsPrefix,
  type IngestRecord,
  ingestKey,
  UNLEASED_INGEST_TTL_MS,
  ingestsPrefix,
  leaseKey,
  leaseResourceKey,
  parseJSON,
} from '../metadata/keys.js';
import { joinLease, listMatching, nowISO, requireNamespace } from './request.js';

/**
 * containerd's namespaced content: one blob store underneath, a record per
 * namespace that committed (or shared) a blob, labels per namespace, ingest
 * refs per namespace, and the caller's lease joined on every write.
 */
@injectable()
export class ContentServiceImpl implements ContentService {
  constructor(
    @inject(ContentStore.key) private readonly store: ContentStore,
    @inject(MetadataStore.key) private readonly meta: MetadataStore,
    @inject(EventExchange.key) private readonly events: EventExchange,
    @inject(GarbageCollector.key) @optional() private readonly gc?: GarbageCollector,
  ) {}

  async info(ctx: RequestContext, digest: string): Promise<ContentInfo> {
    const ns = requireNamespace(ctx);
    validateDigest('digest', digest);
    const record = await this.meta.view((tx) => tx.getJSON<BlobRecord>(blobKey(ns, digest)));
    if (!record) throw notFound(digest);
    return toInfo(digest, record);
  }

  async update(ctx: RequestContext, info: { digest: string; labels: Labels }, paths: readonly string[]): Promise<ContentInfo> {
    const ns = requireNamespace(ctx);
    validateDigest('info.digest', info.digest);
    return this.meta.update(async (tx) => {
      const record = await tx.getJSON<BlobRecord>(blobKey(ns, info.digest));
      if (!record) throw notFound(info.digest);
      const labels = applyLabelPaths(record.labels, info.labels ?? {}, paths);
      validateLabels('info.labels', labels);
      const next = { ...record, labels, updatedAt: nowISO() };
      tx.putJSON(blobKey(ns, info.digest), next);
      return toInfo(info.digest, next);
    });
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<ContentInfo[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    return this.meta.view((tx) =>
      listMatching(tx, blobsPrefix(ns), filter, (key, value) => toInfo(key[4] ?? '', parseJSON<BlobRecord>(value)), infoAdaptor),
    );
  }

  async delete(ctx: RequestContext, digest: string): Promise<void> {
    const ns = requireNamespace(ctx);
    validateDigest('digest', digest);
    await this.meta.update(async (tx) => {
      if ((await tx.get(blobKey(ns, digest))) === undefined) throw notFound(digest);
      tx.del(blobKey(ns, digest));
      tx.onCommit(async () => {
        await this.events.publish(ns, Topic.ContentDelete, { typeUrl: 'containerd.events.ContentDelete', data: { digest } });
        // The blob stays in the store until a collection finds no namespace records it.
        this.gc?.schedule({ content: true });
      });
    });
  }

  async read(ctx: RequestContext, digest: string, offset = 0, size = 0): Promise<AsyncIterable<Uint8Array>> {
    await this.info(ctx, digest);
    // As containerd: a negative offset reads from the start, a non-positive size to the end.
    return this.store.read(digest, Math.max(0, offset), Math.max(0, size));
  }

  async status(ctx: RequestContext, ref: string): Promise<IngestStatus> {
    const ns = requireNamespace(ctx);
    const record = await this.meta.view((tx) => tx.getJSON<IngestRecord>(ingestKey(ns, ref)));
    if (!record) throw new NotFoundError(`ref ${ref}: not found`);
    return { ...(await this.store.status(record.backendRef)), ref };
  }

  async listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const records = await this.meta.view(async (tx) => {
      const out: Array<[string, IngestRecord]> = [];
      for await (const [key, value] of tx.range(ingestsPrefix(ns))) out.push([key[4] ?? '', parseJSON<IngestRecord>(value)]);
      return out;
    });
    const out: IngestStatus[] = [];
    for (const [ref, record] of records) {
      try {
        const status = { ...(await this.store.status(record.backendRef)), ref };
        if (filter.match(statusAdaptor(status))) out.push(status);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return out;
  }

  async abort(ctx: RequestContext, ref: string): Promise<void> {
    const ns = requireNamespace(ctx);
    await this.meta.update(async (tx) => {
      const record = await tx.getJSON<IngestRecord>(ingestKey(ns, ref));
      if (!record) throw new NotFoundError(`ref ${ref}: not found`);
      try {
        await this.store.abort(record.backendRef);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      tx.del(ingestKey(ns, ref));
      // As containerd's Abort: the caller's lease stops holding the ingest.
      if (ctx.lease) tx.del(leaseResourceKey(ns, ctx.lease, 'ingests', ref));
    });
  }

  async writer(ctx: RequestContext, opts: WriterOptions): Promise<ContentIngest> {
    const ns = requireNamespace(ctx);
    if (!opts.ref) throw new InvalidArgumentError('ref must not be empty');
    if (opts.expected) {
      validateDigest('expected', opts.expected);
      const shared = await this.existing(ns, opts.expected);
      if (shared) {
        if (ctx.lease && !(await this.meta.view(async (tx) => (await tx.get(leaseKey(ns, ctx.lease as string))) !== undefined))) {
          throw new NotFoundError(`lease "${ctx.lease}": not found`);
        }
        return new SharedIngest(opts.ref, ns, ctx, shared, this.meta, this.store);
      }
    }
    const backend = await this.store.writer({ ...opts, ref: backendRef(ns, opts.ref) });
    try {
      // Not synced: the ingest's bytes are not durable before its commit either (WRITE data is
      // fsynced at commit), so after a power loss its record would name nothing worth resuming.
      // A synced batch here cost every blob of an import an fdatasync before its first byte.
      await this.meta.update(async (tx) => {
        await tx.ensureNamespace(ns);
        await joinLease(tx, ctx, ns, 'ingests', opts.ref);
        const existing = await tx.getJSON<IngestRecord>(ingestKey(ns, opts.ref));
        const record: IngestRecord = existing ?? {
          backendRef: backendRef(ns, opts.ref),
          expected: opts.expected ?? '',
          createdAt: nowISO(),
        };
        // Every (re)opening outside a lease restarts the unleased ingest's 24 hours.
        const expireAt = ctx.lease ? undefined : new Date(Date.now() + UNLEASED_INGEST_TTL_MS).toISOString();
        if (!existing || existing.expireAt !== expireAt) tx.putJSON(ingestKey(ns, opts.ref), { ...record, expireAt });
      }, { durable: false });
    } catch (err) {
      await backend.close();
      await this.dropUnrecorded(ns, opts.ref);
      throw err;
    }
    return new NamespacedIngest(opts.ref, ns, ctx, backend, this.meta);
  }

  async ingestFile(
    ctx: RequestContext,
    fd: number,
    opts: { ref: string; size?: number; expected?: string; labels?: Labels },
  ): Promise<ContentInfo> {
    const file = await fstatOf(fd);
    if (!file.isFile()) throw new InvalidArgumentError('the descriptor is not a regular file');
    const size = opts.size || file.size;
    if (size > file.size) throw new InvalidArgumentError(`size ${size} is more than the file's ${file.size} bytes`);
    let ingest: ContentIngest;
    try {
      ingest = await this.writer(ctx, { ref: opts.ref, total: size, expected: opts.expected });
    } catch (err) {
      if (isAlreadyExists(err) && opts.expected) return this.info(ctx, opts.expected);
      throw err;
    }
    try {
      if (ingest.offset > size) {
        throw new FailedPreconditionError(`ref ${opts.ref} already holds ${ingest.offset} bytes, more than ${size}`);
      }
      await ingest.copyFrom(fd, size, ctx.signal);
      let digest: string;
      try {
        digest = await ingest.commit(size, opts.expected ?? '', opts.labels);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        digest = opts.expected || ingest.digest();
      }
      return await this.info(ctx, digest);
    } finally {
      await ingest.close();
    }
  }

  /**
   * Remove a backend ingest no metadata record names (one a failed writer()
   * just created): listStatuses cannot show it and nothing else would free it.
   */
  private async dropUnrecorded(ns: string, ref: string): Promise<void> {
    await this.meta.update(async (tx) => {
      if ((await tx.get(ingestKey(ns, ref))) !== undefined) return;
      // Under the metadata lock, so no other writer can record it meanwhile; one holding it makes abort fail, harmlessly.
      await this.store.abort(backendRef(ns, ref)).catch(() => {});
    });
  }

  /**
   * A blob this namespace already has is AlreadyExists. One that only other
   * namespaces have needs no bytes: as containerd does, the ingest opens
   * complete (offset = size) and the commit records it in this namespace.
   */
  private async existing(ns: string, digest: string): Promise<{ digest: string; size: number } | undefined> {
    if (await this.meta.view(async (tx) => (await tx.get(blobKey(ns, digest))) !== undefined)) {
      throw new AlreadyExistsError(`content ${digest}: already exists`);
    }
    try {
      return { digest, size: (await this.store.info(digest)).size };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}

/** An ingest of a blob the store already holds for other namespaces: complete from the start. */
class SharedIngest implements ContentIngest {
  private readonly startedAt = new Date();

  constructor(
    readonly ref: string,
    private readonly ns: string,
    private readonly ctx: RequestContext,
    private readonly blob: { digest: string; size: number },
    private readonly meta: MetadataStore,
    private readonly store: ContentStore,
  ) {}

  get offset(): number {
    return this.blob.size;
  }

  digest(): string {
    return this.blob.digest;
  }

  async status(): Promise<IngestStatus> {
    const { size, digest } = this.blob;
    return { ref: this.ref, offset: size, total: size, expected: digest, startedAt: this.startedAt, updatedAt: this.startedAt };
  }

  async write(data: Uint8Array): Promise<void> {
    if (data.byteLength > 0) throw new FailedPreconditionError(`content ${this.blob.digest} is already complete`);
  }

  async copyFrom(_fd: number, end: number): Promise<void> {
    if (end > this.blob.size) throw new FailedPreconditionError(`content ${this.blob.digest} is already complete`);
  }

  async truncate(): Promise<void> {}

  async commit(size: number, expected: string, given: Labels = {}): Promise<string> {
    const labels = dropEmptyLabels(given);
    validateLabels('labels', labels);
    if (size > 0 && size !== this.blob.size) {
      throw new FailedPreconditionError(`unexpected commit size ${this.blob.size}, expected ${size}`);
    }
    if (expected && expected !== this.blob.digest) {
      throw new FailedPreconditionError(`unexpected commit digest ${this.blob.digest}, expected ${expected}`);
    }
    const { digest } = this.blob;
    const existed = await this.meta.update(async (tx) => {
      // Under the metadata lock: garbage collection cannot take the blob between this check and the record.
      await this.store.info(digest);
      return recordBlob(tx, this.ctx, this.ns, digest, this.blob.size, labels);
    });
    if (existed) throw new AlreadyExistsError(`content ${digest}: already exists`);
    return digest;
  }

  async close(): Promise<void> {}
}

/** One namespaced ingest over a backend writer. */
class NamespacedIngest implements ContentIngest {
  private updatedAt = new Date();

  constructor(
    readonly ref: string,
    private readonly ns: string,
    private readonly ctx: RequestContext,
    private readonly backend: ContentWriter,
    private readonly meta: MetadataStore,
  ) {}

  get offset(): number {
    return this.backend.offset;
  }

  digest(): string {
    return this.backend.digest();
  }

  async status(): Promise<IngestStatus> {
    const status = await this.backend.status();
    return { ...status, ref: this.ref, updatedAt: this.updatedAt > status.updatedAt ? this.updatedAt : status.updatedAt };
  }

  async write(data: Uint8Array): Promise<void> {
    await this.backend.write(data);
    this.updatedAt = new Date();
  }

  async copyFrom(fd: number, end: number, signal?: AbortSignal): Promise<void> {
    try {
      if (this.backend.copyFrom) await this.backend.copyFrom(fd, end, signal);
      else await copyByWrites(fd, this.backend, end, signal);
    } finally {
      this.updatedAt = new Date();
    }
  }

  truncate(size: 0): Promise<void> {
    return this.backend.truncate(size);
  }

  /**
   * The blob is committed and recorded in one metadata transaction, so
   * garbage collection (which holds the metadata lock) never sees the blob
   * without its record.
   */
  async commit(size: number, expected: string, given: Labels = {}): Promise<string> {
    const labels = dropEmptyLabels(given);
    validateLabels('labels', labels);
    if (expected) validateDigest('expected', expected);
    const written = this.backend.offset;
    const { digest, existed } = await this.meta.update(async (tx) => {
      // Check the lease before publishing: a commit refused afterwards would consume the ingest for nothing.
      if (this.ctx.lease && (await tx.get(leaseKey(this.ns, this.ctx.lease))) === undefined) {
        await this.backend.close(); // released, as after any failed commit
        throw new NotFoundError(`lease "${this.ctx.lease}": not found`);
      }
      let digest: string;
      try {
        digest = await this.backend.commit(size, expected || undefined);
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        digest = expected || this.backend.digest();
      }
      tx.del(ingestKey(this.ns, this.ref));
      if (this.ctx.lease) tx.del(leaseResourceKey(this.ns, this.ctx.lease, 'ingests', this.ref));
      return { digest, existed: await recordBlob(tx, this.ctx, this.ns, digest, written, labels) };
    });
    if (existed) throw new AlreadyExistsError(`content ${digest}: already exists`);
    return digest;
  }

  close(): Promise<void> {
    return this.backend.close();
  }
}

/**
 * Record a committed blob in the namespace, joined to the caller's lease.
 * Returns true when the namespace already had it (the caller answers
 * AlreadyExists); its labels are then left as they were.
 */
async function recordBlob(
  tx: WriteTx,
  ctx: RequestContext,
  ns: string,
  digest: string,
  size: number,
  labels: Labels,
): Promise<boolean> {
  await joinLease(tx, ctx, ns, 'content', digest);
  if ((await tx.get(blobKey(ns, digest))) !== undefined) return true;
  await tx.ensureNamespace(ns);
  const now = nowISO();
  tx.putJSON(blobKey(ns, digest), { size, createdAt: now, updatedAt: now, labels: { ...labels } } satisfies BlobRecord);
  return false;
}

function notFound(digest: string): NotFoundError {
  return new NotFoundError(`content digest ${digest}: not found`);
}

function toInfo(digest: string, r: BlobRecord): ContentInfo {
  return { digest, size: r.size, createdAt: new Date(r.createdAt), updatedAt: new Date(r.updatedAt), labels: r.labels };
}

function infoAdaptor(info: ContentInfo): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'digest':
        return info.digest;
      case 'size':
        return String(info.size);
      case 'labels':
        return labelAdaptor(info.labels, path);
      default:
        return undefined;
    }
  };
}

function statusAdaptor(status: IngestStatus): FieldAdaptor {
  return (path) => (path[0] === 'ref' ? status.ref : path[0] === 'expected' ? status.expected || undefined : undefined);
}

/** For a store without copyFrom: read the file and write what was read. */
async function copyByWrites(fd: number, writer: ContentWriter, end: number, signal?: AbortSignal): Promise<void> {
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (let pos = writer.offset; pos < end; ) {
    signal?.throwIfAborted();
    const { bytesRead: n } = await preadAsync(fd, buffer, 0, Math.min(buffer.length, end - pos), pos);
    if (n === 0) throw new FailedPreconditionError(`the file ends at ${pos} bytes, before ${end}`);
    await writer.write(buffer.subarray(0, n));
    pos += n;
  }
}

const preadAsync = promisify(read);
const fstatOf = promisify(fstat);
