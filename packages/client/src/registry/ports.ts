import type { ContentInfo, Image, ImageInput, Labels } from '@berth/plugin-api';

/**
 * The little of the daemon's content, images and leases services that pull
 * and push use. Small on purpose: tests and other engines can stand in, and
 * BerthClient's service clients satisfy it through `registryStores`.
 */

/** An open ingest (one Content.Write stream). */
export interface IngestWriter {
  /** Bytes already in the ingest when it was opened (STAT): a resumed transfer starts here. */
  readonly offset: number;
  write(data: Uint8Array): Promise<void>;
  /** The store verifies size and digest; FailedPrecondition on mismatch. */
  commit(size: number, expected: string, labels?: Labels): Promise<unknown>;
  /** End the stream without committing: the ingest and its bytes stay, to be resumed. */
  close(): Promise<void>;
}

export interface ContentPort {
  /** NotFoundError when the blob is not in this namespace. */
  info(digest: string): Promise<ContentInfo>;
  /** Set labels; `paths` as `labels.<key>`. */
  update(digest: string, labels: Labels, paths: readonly string[]): Promise<void>;
  read(digest: string, offset?: number): AsyncIterable<Uint8Array>;
  /** AlreadyExistsError when `expected` is already committed. */
  writer(ref: string, opts: { total: number; expected: string }): Promise<IngestWriter>;
  /** Drop an ingest and its bytes; NotFound is not an error here. */
  abort(ref: string): Promise<void>;
}

export interface ImagePort {
  get(name: string): Promise<Image>;
  create(image: ImageInput): Promise<Image>;
  update(image: ImageInput, paths: readonly string[]): Promise<Image>;
}

export interface LeasePort {
  /** A new lease; returns its id. */
  create(labels: Labels): Promise<string>;
  /** With `sync`, returns after garbage collection has run. */
  delete(id: string, opts?: { sync?: boolean }): Promise<void>;
}

/** The stores of one namespace; `withLease` binds content writes to a lease (gRPC `containerd-lease`). */
export interface RegistryStores {
  readonly content: ContentPort;
  readonly images: ImagePort;
  readonly leases: LeasePort;
  /** The lease these stores' writes already carry, if any. */
  readonly lease?: string;
  withLease(lease: string): RegistryStores;
}
