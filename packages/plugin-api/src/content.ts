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
  readonly labels: Labels;
}

export interface IngestStatus {
  readonly ref: string;
  readonly offset: number;
  readonly total: number;
  readonly expected: string;
  readonly startedAt: Date;
  readonly updatedAt: Date;
}

export interface ContentWriter {
  readonly ref: string;
  status(): Promise<IngestStatus>;
  write(data: Uint8Array): Promise<number>;
  /** Verifies size and digest (FailedPrecondition on mismatch) and publishes the blob atomically. */
  commit(size: number, expected: string, labels?: Labels): Promise<ContentInfo>;
  close(): Promise<void>;
}

/** A blob store by digest (io.containerd.content.v1); namespacing is the metadata layer's job. */
export interface ContentStore {
  info(digest: string): Promise<ContentInfo>;
  read(digest: string, offset?: number, size?: number): AsyncIterable<Uint8Array>;
  walk(fn: (info: ContentInfo) => Promise<void> | void): Promise<void>;
  delete(digest: string): Promise<void>;
  writer(ref: string, total?: number, expected?: string): Promise<ContentWriter>;
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
