import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import { token } from './token.js';

/*
 * Interfaces the later subsystems implement. No plugin provides these yet;
 * they are here so plugin authors and berth's own roadmap agree on the
 * shapes (modelled on containerd's content, snapshots and runtime APIs).
 */

export interface ContentInfo {
  readonly digest: string;
  readonly size: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** Labels are per namespace and kept by the metadata layer; stores return {}. */
  readonly labels: Labels;
}

export interface IngestStatus {
  readonly ref: string;
  readonly offset: number;
  /** Expected total size, 0 when unknown. */
  readonly total: number;
  /** Expected digest, '' when unknown. */
  readonly expected: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

export interface WriterOptions {
  readonly ref: string;
  readonly total?: number;
  readonly expected?: string;
}

/**
 * An open ingest. Only one writer may hold a ref at a time (a second one gets
 * UnavailableError, as containerd answers "ref locked"); `close` releases it
 * and keeps the data so a later writer resumes at `offset`.
 */
export interface ContentWriter {
  readonly ref: string;
  /** Bytes written so far (including those from before a resume). */
  readonly offset: number;
  /** sha256 digest of the bytes written so far, whatever algorithm `expected` uses. */
  digest(): string;
  status(): Promise<IngestStatus>;
  /** Append at the current offset. */
  write(data: Uint8Array): Promise<void>;
  /**
   * Append the bytes of the open regular file `fd` from the current offset up
   * to `end` (file offsets, the file's start being the blob's start), as
   * `write` would, but read by the store itself. Optional: without it callers
   * read the file and `write` what they read.
   */
  copyFrom?(fd: number, end: number, signal?: AbortSignal): Promise<void>;
  /** Discard everything written (containerd allows truncating to 0 only). */
  truncate(size: 0): Promise<void>;
  /**
   * Verify `size` (when > 0) and `expected` (when set; sha256 or sha512),
   * fsync, and publish the blob atomically. FailedPrecondition on mismatch
   * (the ingest stays, to be resumed or aborted); AlreadyExists when the blob
   * is already there (the ingest is removed). Returns the blob's digest.
   * Whatever the outcome, the writer is closed and the ref released.
   */
  commit(size: number, expected?: string): Promise<string>;
  close(): Promise<void>;
}

/** A blob store by digest (io.containerd.content.v1). Namespaces and labels are the metadata layer's job. */
export interface ContentStore {
  info(digest: string): Promise<ContentInfo>;
  /** Bytes of a blob from `offset`, at most `size` of them (0 or absent: to the end). */
  read(digest: string, offset?: number, size?: number): AsyncIterable<Uint8Array>;
  walk(fn: (info: ContentInfo) => Promise<void> | void): Promise<void>;
  delete(digest: string): Promise<void>;
  writer(opts: WriterOptions): Promise<ContentWriter>;
  status(ref: string): Promise<IngestStatus>;
  listStatuses(): Promise<IngestStatus[]>;
  abort(ref: string): Promise<void>;
}
export const ContentStore = token<ContentStore>('ContentStore');

/** Where blobs can come from besides the local store (registries, peers). */
export interface ContentSource {
  /** Higher runs first. */
  readonly priority: number;
  fetch(ref: string, digest: string, size: number, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array> | undefined>;
}
export const ContentSource = token<ContentSource>('ContentSource', { multi: true });

/** A namespaced ingest in progress, as the Content service's Write stream drives it. */
export interface ContentIngest {
  readonly ref: string;
  status(): Promise<IngestStatus>;
  /** Current digest of the bytes written. */
  digest(): string;
  readonly offset: number;
  write(data: Uint8Array): Promise<void>;
  /** Append the bytes of the open regular file `fd` from `offset` up to `end`, as ContentWriter.copyFrom. */
  copyFrom(fd: number, end: number, signal?: AbortSignal): Promise<void>;
  truncate(size: 0): Promise<void>;
  commit(size: number, expected: string, labels?: Labels): Promise<string>;
  close(): Promise<void>;
}

/**
 * Content as containerd's clients see it: one blob store shared by every
 * namespace, each blob visible in the namespaces that committed it, labels
 * per namespace, ingests named per namespace, joined to the caller's lease.
 */
export interface ContentService {
  info(ctx: RequestContext, digest: string): Promise<ContentInfo>;
  update(ctx: RequestContext, info: { digest: string; labels: Labels }, paths: readonly string[]): Promise<ContentInfo>;
  list(ctx: RequestContext, filters: readonly string[]): Promise<ContentInfo[]>;
  delete(ctx: RequestContext, digest: string): Promise<void>;
  read(ctx: RequestContext, digest: string, offset?: number, size?: number): Promise<AsyncIterable<Uint8Array>>;
  status(ctx: RequestContext, ref: string): Promise<IngestStatus>;
  listStatuses(ctx: RequestContext, filters: readonly string[]): Promise<IngestStatus[]>;
  abort(ctx: RequestContext, ref: string): Promise<void>;
  /** AlreadyExists when `expected` is already in this namespace (or was just shared into it from another). */
  writer(ctx: RequestContext, opts: WriterOptions): Promise<ContentIngest>;
  /**
   * Ingest and commit the first `size` bytes (0: all) of the open regular
   * file `fd` under `ref`, resuming an unfinished ingest of that ref, as a
   * Write stream that ends in COMMIT would; the caller keeps and closes `fd`.
   * A blob already in this namespace is answered as it is.
   */
  ingestFile(
    ctx: RequestContext,
    fd: number,
    opts: { ref: string; size?: number; expected?: string; labels?: Labels },
  ): Promise<ContentInfo>;
}
export const ContentService = token<ContentService>('ContentService');
