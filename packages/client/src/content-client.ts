import { type BidiStream, bidiStream, fromTimestamp, type ServiceClient, type Timestamp } from '@berth/api';
import {
  type ContentInfo,
  descriptorAddressOf,
  errorKindOf,
  errorMessage,
  FailedPreconditionError,
  type IngestStatus,
  InvalidArgumentError,
  isAlreadyExists,
  isNotFound,
  isNotImplemented,
  type Labels,
  NotFoundError,
} from '@berth/plugin-api';
import { closeFd, connectUnixSocket, sendFd } from '@berth/sys';
import { createHash, type Hash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, fstat } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { ClientContext, RequestOptions } from './client-context.js';

/** Bytes per WRITE message (containerd's client copies with a 1 MiB buffer). */
export const WRITE_CHUNK_BYTES = 1024 * 1024;
/** WRITE messages sent ahead of their answers. */
const WRITE_WINDOW = 8;

interface WireInfo {
  digest?: string;
  size?: number;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  labels?: Record<string, string>;
}
interface WireStatus {
  startedAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  ref?: string;
  offset?: number;
  total?: number;
  expected?: string;
}
// containerd.services.content.v1.WriteAction
const STAT = 0;
const WRITE = 1;
const COMMIT = 2;
interface WriteRequest {
  action: number;
  ref?: string;
  total?: number;
  expected?: string;
  offset?: number;
  data?: Uint8Array;
  labels?: Record<string, string>;
}
interface WriteResponse {
  action?: number;
  startedAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  offset?: number;
  total?: number;
  digest?: string;
}

export const infoFromWire = (i: WireInfo | null | undefined): ContentInfo => ({
  digest: i?.digest ?? '',
  size: Number(i?.size ?? 0),
  createdAt: fromTimestamp(i?.createdAt),
  updatedAt: fromTimestamp(i?.updatedAt),
  labels: i?.labels ?? {},
});

const statusFromWire = (s: WireStatus | null | undefined): IngestStatus => ({
  ref: s?.ref ?? '',
  offset: Number(s?.offset ?? 0),
  total: Number(s?.total ?? 0),
  expected: s?.expected ?? '',
  startedAt: fromTimestamp(s?.startedAt),
  updatedAt: fromTimestamp(s?.updatedAt),
});

/** What `ingest` and `openWriter` read from: a stream, any async iterable of bytes, or the bytes themselves. */
export type ContentSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array;

export interface WriterOptions extends RequestOptions {
  /** Expected digest: the server answers AlreadyExists at once when it has it, and verifies it on commit. */
  readonly expected?: string;
  /** Expected size in bytes (0 or absent: unknown). */
  readonly total?: number;
  /** Lease the ingest and the blob join; default: the client's (see BerthClient.withLease). */
  readonly lease?: string;
}

export interface IngestOptions extends WriterOptions {
  /** Labels set on the blob at commit (e.g. `containerd.io/gc.ref.content.*`). */
  readonly labels?: Labels;
  /**
   * Whether to carry on from the bytes the server already holds for `ref` (the
   * default, as containerd's content.Copy does: that many bytes of the source are
   * skipped), or to start over from byte 0. Only resume when the same ref always
   * means the same bytes, e.g. when `expected` is given.
   */
  readonly resume?: boolean;
}

/**
 * An open ingest on the Content.Write stream, as containerd's remote writer:
 * one request and one answer at a time. `offset` is where the next write goes.
 */
export class ContentWriter {
  private readonly responses: AsyncIterator<WriteResponse>;
  private done = false;
  private lastDigest = '';
  /** Offsets the daemon should answer with, for the WRITEs still in flight. */
  private readonly inflight: number[] = [];

  private constructor(
    private readonly stream: BidiStream<WriteRequest, WriteResponse>,
    readonly ref: string,
    /** Bytes the server holds for this ingest. */
    public offset: number,
    /** Expected size, 0 when unknown. */
    readonly total: number,
    readonly startedAt: Date,
  ) {
    this.responses = stream.responses[Symbol.asyncIterator]();
  }

  /**
   * Open the ingest `ref` and ask its status (STAT). AlreadyExistsError when
   * `expected` is given and the daemon already has that blob.
   */
  static async open(ctx: ClientContext, ref: string, opts: WriterOptions = {}): Promise<ContentWriter> {
    const callOpts = { ...ctx.stream(opts), ...(opts.lease ? { lease: opts.lease } : {}) };
    const stream = bidiStream<WriteRequest, WriteResponse>(
      ctx.connection,
      'containerd.services.content.v1.Content',
      'Write',
      callOpts,
    );
    const it = stream.responses[Symbol.asyncIterator]();
    try {
      const req: WriteRequest = { action: STAT, ref, total: opts.total ?? 0, expected: opts.expected ?? '' };
      const res = await ContentWriter.exchange(stream, it, req);
      const writer = new ContentWriter(stream, ref, Number(res.offset ?? 0), Number(res.total ?? 0), fromTimestamp(res.startedAt));
      writer.lastDigest = res.digest ?? '';
      return writer;
    } catch (err) {
      stream.cancel();
      throw err;
    }
  }

  private static async exchange(
    stream: BidiStream<WriteRequest, WriteResponse>,
    it: AsyncIterator<WriteResponse>,
    req: WriteRequest,
  ): Promise<WriteResponse> {
    // The status of a failed call reaches the response side; the write side may just see a closed stream.
    stream.write(req).catch(() => {});
    const r = await it.next();
    if (r.done) throw new FailedPreconditionError(`write ${req.ref ?? ''}: the daemon closed the stream without an answer`);
    return r.value;
  }

  private async send(req: WriteRequest): Promise<WriteResponse> {
    if (this.done) throw new FailedPreconditionError(`write ${this.ref}: the writer is closed`);
    try {
      const res = await ContentWriter.exchange(this.stream, this.responses, req);
      if (res.digest) this.lastDigest = res.digest;
      return res;
    } catch (err) {
      this.done = true;
      this.stream.cancel();
      throw err;
    }
  }

  /** The daemon's digest of the bytes written so far (as of the last answer). */
  get digest(): string {
    return this.lastDigest;
  }

  /**
   * Append `data` at `offset`, in messages of at most 1 MiB. Up to
   * WRITE_WINDOW messages stay in flight before their answers are read: the
   * daemon answers in order, so the client never waits a round trip per MiB.
   * By default the call returns once the daemon has acknowledged every byte;
   * with `{ wait: false }` answers may still be owed across calls (`commit`
   * and `close` collect them), which is how `ingest` streams.
   */
  async write(data: Uint8Array, opts: { wait?: boolean } = {}): Promise<void> {
    if (this.done) throw new FailedPreconditionError(`write ${this.ref}: the writer is closed`);
    for (let at = 0; at < data.length; at += WRITE_CHUNK_BYTES) {
      const chunk = data.subarray(at, Math.min(at + WRITE_CHUNK_BYTES, data.length));
      // The status of a failed call reaches the response side; the write side may just see a closed stream.
      this.stream.write({ action: WRITE, ref: this.ref, offset: this.offset, data: chunk }).catch(() => {});
      this.offset += chunk.length;
      this.inflight.push(this.offset);
      if (this.inflight.length >= WRITE_WINDOW) await this.settle();
    }
    if (opts.wait !== false) await this.settleAll();
  }

  /** Read the answer to the oldest WRITE in flight and check the daemon is where it should be. */
  private async settle(): Promise<void> {
    const want = this.inflight.shift() as number;
    let res: WriteResponse;
    try {
      const r = await this.responses.next();
      if (r.done) throw new FailedPreconditionError(`write ${this.ref}: the daemon closed the stream without an answer`);
      res = r.value;
    } catch (err) {
      this.done = true;
      this.stream.cancel();
      throw err;
    }
    if (res.digest) this.lastDigest = res.digest;
    const offset = Number(res.offset ?? 0);
    if (offset !== want) {
      this.abandon();
      throw new FailedPreconditionError(`write ${this.ref}: the daemon is at offset ${offset}, expected ${want}`);
    }
  }

  private async settleAll(): Promise<void> {
    while (this.inflight.length > 0) await this.settle();
  }

  /** Discard what the ingest holds: the next write starts at 0 (the daemon truncates on a write at offset 0). */
  restart(): void {
    this.offset = 0;
  }

  /**
   * Commit the blob: the daemon checks `size` (when > 0) and `expected` (when
   * set) and publishes it with `labels`. Returns its digest. AlreadyExistsError
   * when the blob already exists; FailedPreconditionError on a mismatch (the
   * ingest stays, to be resumed or aborted).
   */
  async commit(size: number, expected = '', labels: Labels = {}): Promise<string> {
    await this.settleAll();
    const res = await this.send({
      action: COMMIT,
      ref: this.ref,
      offset: this.offset,
      total: size,
      expected,
      labels: { ...labels },
    });
    this.done = true;
    this.stream.end();
    // containerd sends the commit answer twice: drain to the status.
    for (;;) {
      const r = await this.responses.next().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) break;
    }
    const digest = res.digest ?? '';
    if (size > 0 && Number(res.offset ?? 0) !== size) {
      throw new FailedPreconditionError(`commit ${this.ref}: unexpected size ${res.offset} != ${size}`);
    }
    if (expected && digest !== expected) {
      throw new FailedPreconditionError(`commit ${this.ref}: unexpected digest ${digest} != ${expected}`);
    }
    return digest;
  }

  /** End the stream, keeping what was written so that a later writer resumes (containerd's Close). */
  async close(): Promise<void> {
    if (this.done) return;
    await this.settleAll().catch(() => {});
    this.done = true;
    this.stream.end();
    for (;;) {
      const r = await this.responses.next().catch(() => ({ done: true as const, value: undefined }));
      if (r.done) break;
    }
  }

  /** Drop the stream at once (the daemon keeps the bytes it has). */
  abandon(): void {
    this.done = true;
    this.stream.cancel();
  }
}

/** containerd.services.content.v1.Content: blobs by digest, labels per namespace, resumable ingests. */
export class ContentClient {
  private readonly svc: ServiceClient;

  /** berth's own LocalContent service, for ingestFile. */
  private readonly local: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.content.v1.Content');
    this.local = ctx.service('berth.services.content.v1.LocalContent');
  }

  /** NotFoundError when this namespace does not have the blob. */
  async info(digest: string, opts?: RequestOptions): Promise<ContentInfo> {
    const res = await this.svc.unary<{ info?: WireInfo }>('Info', { digest }, this.ctx.call(opts));
    return infoFromWire(res.info);
  }

  /**
   * Set labels. `paths`: `labels` replaces them all, `labels.<key>` sets one
   * key (absent from `labels` or empty: removes it); none replaces them all.
   */
  async update(digest: string, labels: Labels, paths: readonly string[] = [], opts?: RequestOptions): Promise<ContentInfo> {
    const res = await this.svc.unary<{ info?: WireInfo }>(
      'Update',
      { info: { digest, labels }, updateMask: { paths: [...paths] } },
      this.ctx.call(opts),
    );
    return infoFromWire(res.info);
  }

  /** Blobs matching any of the filters (`digest==…`, `size>…`, `labels."k"==v`); none means all. */
  async list(filters: readonly string[] = [], opts?: RequestOptions): Promise<ContentInfo[]> {
    const out: ContentInfo[] = [];
    for await (const res of this.svc.serverStream<{ info?: WireInfo[] }>(
      'List',
      { filters: [...filters] },
      this.ctx.call(opts),
    )) {
      for (const info of res.info ?? []) out.push(infoFromWire(info));
    }
    return out;
  }

  async delete(digest: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Delete', { digest }, this.ctx.call(opts));
  }

  /** The blob's bytes from `offset`, at most `size` of them (0 or absent: to the end). */
  async *read(digest: string, opts: RequestOptions & { readonly offset?: number; readonly size?: number } = {}): AsyncIterable<Buffer> {
    const req = { digest, offset: opts.offset ?? 0, size: opts.size ?? 0 };
    for await (const res of this.svc.serverStream<{ offset?: number; data?: Uint8Array }>('Read', req, this.ctx.stream(opts))) {
      const data = res.data ?? new Uint8Array();
      if (data.length > 0) yield Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    }
  }

  /**
   * A whole blob in memory. Refuses (InvalidArgumentError) a blob larger than
   * `maxBytes` before reading it, so that a hostile manifest cannot make us
   * buffer gigabytes.
   */
  async readAll(digest: string, opts: RequestOptions & { readonly maxBytes?: number } = {}): Promise<Buffer> {
    const max = opts.maxBytes ?? Number.POSITIVE_INFINITY;
    if (Number.isFinite(max)) {
      const info = await this.info(digest, opts);
      if (info.size > max) throw new InvalidArgumentError(`blob ${digest} is ${info.size} bytes, more than the ${max} allowed`);
    }
    const parts: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.read(digest, { ...opts, size: Number.isFinite(max) ? max + 1 : 0 })) {
      size += chunk.length;
      if (size > max) throw new InvalidArgumentError(`blob ${digest} is more than the ${max} bytes allowed`);
      parts.push(chunk);
    }
    return Buffer.concat(parts, size);
  }

  /** NotFoundError when no ingest has that ref. */
  async status(ref: string, opts?: RequestOptions): Promise<IngestStatus> {
    const res = await this.svc.unary<{ status?: WireStatus }>('Status', { ref }, this.ctx.call(opts));
    return statusFromWire(res.status);
  }

  /** Ingests in progress matching any of the filters (e.g. `ref~=^tar-`). */
  async listStatuses(filters: readonly string[] = [], opts?: RequestOptions): Promise<IngestStatus[]> {
    const res = await this.svc.unary<{ statuses?: WireStatus[] }>(
      'ListStatuses',
      { filters: [...filters] },
      this.ctx.call(opts),
    );
    return (res.statuses ?? []).map(statusFromWire);
  }

  /** Drop an ingest and its bytes. */
  async abort(ref: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Abort', { ref }, this.ctx.call(opts));
  }

  /**
   * Open the ingest `ref` for writing by hand (what `ingest` does for you):
   * for fetchers that stream a blob from elsewhere and resume at `writer.offset`.
   * While another writer holds the ref ("ref … locked"), waits and retries
   * with backoff, as containerd's content.OpenWriter does, for up to
   * `lockWaitMs` (default 60 s) or until `signal` aborts.
   */
  async openWriter(ref: string, opts: WriterOptions & { readonly lockWaitMs?: number } = {}): Promise<ContentWriter> {
    return retryWhileLocked(() => ContentWriter.open(this.ctx, ref, opts), opts);
  }

  /**
   * Write a blob from `source` through the ingest `ref` and commit it with
   * `labels`, checking `total` and `expected` when given. Resumes an
   * interrupted ingest of the same ref (skipping the bytes the daemon already
   * has). When the daemon already has the blob, nothing is written and its
   * info comes back. Abort with `signal`; the ingest then stays, to be resumed.
   * A blob nothing refers to (no lease, no `containerd.io/gc.root` label, no
   * parent) may be garbage collected at any moment, as in containerd.
   */
  async ingest(ref: string, source: ContentSource, opts: IngestOptions = {}): Promise<ContentInfo> {
    const result = await this.ingestWithDigest(ref, source, opts);
    try {
      return await this.info(result.digest, opts);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      throw new NotFoundError(
        `blob ${result.digest} was committed and at once garbage collected: nothing refers to it (ingest under a lease, or label it containerd.io/gc.root)`,
      );
    }
  }

  /**
   * `ingest`, also telling whether the blob was written now and the sha256 of
   * the bytes read from `source` (for callers that verify a source whose
   * digest they did not know beforehand). Does not fetch the info.
   */
  async ingestWithDigest(
    ref: string,
    source: ContentSource,
    opts: IngestOptions = {},
  ): Promise<{ digest: string; size: number; written: boolean; sourceDigest?: string }> {
    let writer: ContentWriter;
    try {
      writer = await this.openWriter(ref, opts);
    } catch (err) {
      if (isAlreadyExists(err) && opts.expected) {
        // Already here (and now in our lease): the source is left unread.
        await this.labelExisting(opts.expected, opts);
        const info = await this.info(opts.expected, opts);
        return { digest: info.digest, size: info.size, written: false };
      }
      throw err;
    }
    // With an expected digest the daemon verifies the bytes at commit; hash here only to learn the digest.
    const hash = opts.expected ? undefined : createHash('sha256');
    let size = 0;
    try {
      // More bytes than the blob can have: not a prefix of it, start over.
      if (opts.resume === false || (opts.total && writer.offset > opts.total)) writer.restart();
      let skip = writer.offset;
      for await (const piece of chunks(source)) {
        hash?.update(piece);
        size += piece.length;
        let data = piece;
        if (skip > 0) {
          const n = Math.min(skip, data.length);
          skip -= n;
          data = data.subarray(n);
        }
        if (data.length > 0) await writer.write(data, { wait: false });
        if (opts.total && size > opts.total) {
          throw new InvalidArgumentError(`ingest ${ref}: the source has more than the ${opts.total} bytes expected`);
        }
      }
      if (skip > 0) {
        throw new InvalidArgumentError(`ingest ${ref}: the source has ${size} bytes, fewer than the ${writer.offset} already written`);
      }
      const sourceDigest = hash ? hexDigest(hash) : undefined;
      try {
        const digest = await writer.commit(opts.total ?? size, opts.expected ?? '', opts.labels);
        return { digest, size, written: true, sourceDigest };
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        const digest = opts.expected || (sourceDigest as string);
        await this.labelExisting(digest, opts);
        return { digest, size, written: false, sourceDigest };
      }
    } catch (err) {
      writer.abandon();
      throw err;
    }
  }

  /**
   * `ingest` of a file (a path, or an open descriptor the caller keeps). With
   * berthd on a local socket the file does not travel through gRPC: its
   * descriptor goes over berthd's descriptor socket and berthd copies, hashes
   * and commits the bytes itself (berth.services.content.v1.LocalContent).
   * Anywhere else (containerd, a TCP address, an older berthd) the bytes are
   * streamed with Content.Write as `ingest` does. `total` defaults to the
   * file's size; the same resume, lease and label rules apply.
   */
  async ingestFile(ref: string, file: string | number, opts: IngestOptions = {}): Promise<ContentInfo> {
    const fh = typeof file === 'string' ? await open(file, 'r') : undefined;
    const fd = fh?.fd ?? (file as number);
    try {
      const local = descriptorSocketOf(this.ctx.connection.address);
      if (local && existsSync(local)) {
        try {
          return await this.ingestByDescriptor(local, ref, fd, opts);
        } catch (err) {
          if (!isNotImplemented(err)) throw err; // a berthd without LocalContent: stream it
        }
      }
      const total = opts.total ?? (await fstatAsync(fd)).size;
      return await this.ingest(ref, createReadStream('', { fd, start: 0, autoClose: false, highWaterMark: 1024 * 1024 }), { ...opts, total });
    } finally {
      await fh?.close();
    }
  }

  private async ingestByDescriptor(socket: string, ref: string, fd: number, opts: IngestOptions): Promise<ContentInfo> {
    if (opts.resume === false) {
      await this.abort(ref, opts).catch((err) => {
        if (!isNotFound(err)) throw err;
      });
    }
    // Each try passes the descriptor anew: berthd closes the one it took.
    const res = await retryWhileLocked(() => {
      const token = randomBytes(18).toString('base64url');
      const conn = connectUnixSocket(socket);
      try {
        sendFd(conn, fd, Buffer.from(token));
      } finally {
        closeFd(conn);
      }
      return this.local.unary<{ digest: string }>(
        'IngestFile',
        { ref, token, size: opts.total ?? 0, expected: opts.expected ?? '', labels: opts.labels ?? {} },
        this.ctx.call(opts),
      );
    }, opts);
    // As `ingest`: a blob already here keeps its labels; set the ones asked for.
    await this.labelExisting(res.digest, opts);
    return this.info(res.digest, opts);
  }

  /** A commit of an existing blob leaves its labels alone; set the ones asked for. */
  private async labelExisting(digest: string, opts: IngestOptions): Promise<void> {
    const keys = Object.keys(opts.labels ?? {});
    if (keys.length === 0) return;
    await this.update(digest, opts.labels ?? {}, keys.map((k) => `labels.${k}`), opts);
  }
}

/**
 * Run `attempt` again while the ref it writes is locked by another writer (Unavailable "ref …
 * locked", as containerd answers), with a randomised backoff, for up to `lockWaitMs` (60 s).
 */
async function retryWhileLocked<T>(
  attempt: () => Promise<T>,
  opts: { readonly lockWaitMs?: number; readonly signal?: AbortSignal },
): Promise<T> {
  const deadline = Date.now() + (opts.lockWaitMs ?? 60_000);
  let backoff = 16;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      const locked = errorKindOf(err) === 'unavailable' && /locked/.test(errorMessage(err));
      if (!locked || Date.now() >= deadline || opts.signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * backoff));
      backoff = Math.min(backoff * 2, 2048);
    }
  }
}

/** berthd's descriptor socket for a local gRPC address; undefined for any other address. */
function descriptorSocketOf(address: string): string | undefined {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  return path.startsWith('/') ? descriptorAddressOf(path) : undefined;
}


const fstatAsync = promisify(fstat);

function hexDigest(hash: Hash): string {
  return `sha256:${hash.digest('hex')}`;
}

/** The source as Uint8Array pieces (a Readable yields Buffers, or strings when an encoding is set). */
async function* chunks(source: ContentSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  for await (const piece of source as AsyncIterable<Uint8Array | string>) {
    yield typeof piece === 'string' ? Buffer.from(piece) : piece;
  }
}
