import { createHash } from 'node:crypto';
import {
  AlreadyExistsError,
  type ContentInfo,
  type ContentStore,
  type ContentWriter,
  FailedPreconditionError,
  type IngestStatus,
  InvalidArgumentError,
  OutOfRangeError,
  NotFoundError,
  UnavailableError,
  type WriterOptions,
} from '@berth/plugin-api';
import { contentStoreSuite } from './index.js';

/*
 * The suite run against the simplest store that can be right: everything in
 * memory, hashes recomputed from scratch. It proves the suite asks for a
 * consistent contract, not for one implementation's quirks.
 */

interface Ingest {
  ref: string;
  chunks: Uint8Array[];
  total: number;
  expected: string;
  startedAt: Date;
  updatedAt: Date;
}

const validDigest = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;

function check(digest: string): string {
  if (!validDigest.test(digest)) throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}`);
  return digest;
}

function checkRef(ref: string): void {
  if (!ref) throw new InvalidArgumentError('ref must not be empty');
}

function hashOf(chunks: Uint8Array[], algorithm = 'sha256'): string {
  const hash = createHash(algorithm);
  for (const c of chunks) hash.update(c);
  return `${algorithm}:${hash.digest('hex')}`;
}

const sizeOf = (chunks: Uint8Array[]) => chunks.reduce((n, c) => n + c.length, 0);

class MemoryContentStore implements ContentStore {
  readonly blobs = new Map<string, { data: Uint8Array; createdAt: Date }>();
  readonly ingests = new Map<string, Ingest>();
  readonly locked = new Set<string>();

  async info(digest: string): Promise<ContentInfo> {
    const blob = this.blobs.get(check(digest));
    if (!blob) throw new NotFoundError(`content ${digest}: not found`);
    return { digest, size: blob.data.length, createdAt: blob.createdAt, updatedAt: blob.createdAt, labels: {} };
  }

  async *read(digest: string, offset = 0, size = 0): AsyncIterable<Uint8Array> {
    const { data } = this.blobs.get(check(digest)) ?? {};
    if (!data) throw new NotFoundError(`content ${digest}: not found`);
    if (offset < 0 || size < 0) throw new InvalidArgumentError(`bad range ${offset}+${size}`);
    if (offset > data.length) throw new OutOfRangeError(`offset ${offset} is past the end`);
    const end = size > 0 ? Math.min(data.length, offset + size) : data.length;
    for (let at = offset; at < end; at += 1 << 20) yield data.slice(at, Math.min(end, at + (1 << 20)));
  }

  async walk(fn: (info: ContentInfo) => Promise<void> | void): Promise<void> {
    for (const digest of [...this.blobs.keys()]) await fn(await this.info(digest));
  }

  async delete(digest: string): Promise<void> {
    if (!this.blobs.delete(check(digest))) throw new NotFoundError(`content ${digest}: not found`);
  }

  async writer({ ref, total = 0, expected = '' }: WriterOptions): Promise<ContentWriter> {
    checkRef(ref);
    if (expected && this.blobs.has(check(expected))) throw new AlreadyExistsError(`content ${expected}: already exists`);
    if (this.locked.has(ref)) throw new UnavailableError(`ref ${ref} locked`);
    let ingest = this.ingests.get(ref);
    if (ingest) {
      if ((total && ingest.total && total !== ingest.total) || (expected && ingest.expected && expected !== ingest.expected)) {
        throw new FailedPreconditionError(`ref ${ref}: total or expected differ from the ingest's`);
      }
      ingest.total ||= total;
      ingest.expected ||= expected;
    } else {
      const now = new Date();
      ingest = { ref, chunks: [], total, expected, startedAt: now, updatedAt: now };
      this.ingests.set(ref, ingest);
    }
    this.locked.add(ref);
    return new MemoryWriter(this, ingest);
  }

  async status(ref: string): Promise<IngestStatus> {
    checkRef(ref);
    const ingest = this.ingests.get(ref);
    if (!ingest) throw new NotFoundError(`ref ${ref}: not found`);
    const { chunks, ...rest } = ingest;
    return { ...rest, offset: sizeOf(chunks) };
  }

  async listStatuses(): Promise<IngestStatus[]> {
    return Promise.all([...this.ingests.keys()].map((ref) => this.status(ref)));
  }

  async abort(ref: string): Promise<void> {
    checkRef(ref);
    if (this.locked.has(ref)) throw new UnavailableError(`ref ${ref} locked`);
    if (!this.ingests.delete(ref)) throw new NotFoundError(`ref ${ref}: not found`);
  }
}

class MemoryWriter implements ContentWriter {
  #open = true;
  constructor(
    private readonly store: MemoryContentStore,
    private readonly ingest: Ingest,
  ) {}

  get ref(): string {
    return this.ingest.ref;
  }
  get offset(): number {
    return sizeOf(this.ingest.chunks);
  }
  digest(): string {
    return hashOf(this.ingest.chunks);
  }
  status(): Promise<IngestStatus> {
    return this.store.status(this.ref);
  }
  async write(data: Uint8Array): Promise<void> {
    this.assertOpen();
    this.ingest.chunks.push(data.slice());
    this.ingest.updatedAt = new Date();
  }
  async truncate(size: 0): Promise<void> {
    this.assertOpen();
    if (size !== 0) throw new InvalidArgumentError('truncate to 0 only');
    this.ingest.chunks = [];
  }
  async commit(size: number, expected?: string): Promise<string> {
    this.assertOpen();
    this.release(); // a commit ends the writer, whatever its outcome
    const want = expected || this.ingest.expected;
    const algorithm = want ? check(want).split(':')[0] : 'sha256';
    const wantSize = size || this.ingest.total;
    if (wantSize && this.offset !== wantSize) {
      throw new FailedPreconditionError(`unexpected commit size ${this.offset}, expected ${wantSize}`);
    }
    const digest = hashOf(this.ingest.chunks, algorithm);
    if (want && digest !== want) throw new FailedPreconditionError(`unexpected commit digest ${digest}, expected ${want}`);
    this.store.ingests.delete(this.ref);
    if (this.store.blobs.has(digest)) throw new AlreadyExistsError(`content ${digest}: already exists`);
    const data = new Uint8Array(this.offset);
    let at = 0;
    for (const c of this.ingest.chunks) {
      data.set(c, at);
      at += c.length;
    }
    this.store.blobs.set(digest, { data, createdAt: new Date() });
    return digest;
  }
  async close(): Promise<void> {
    this.release();
  }
  private release(): void {
    if (this.#open) this.store.locked.delete(this.ref);
    this.#open = false;
  }
  private assertOpen(): void {
    if (!this.#open) throw new FailedPreconditionError(`ref ${this.ref}: writer is closed`);
  }
}

contentStoreSuite('MemoryContentStore (reference)', async () => ({
  store: new MemoryContentStore(),
  cleanup: async () => {},
}));
