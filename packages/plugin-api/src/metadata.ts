import { token } from './token.js';

/**
 * A key in the metadata store: path segments, joined by the store with a
 * separator no segment may contain. Namespaced records start with
 * `['v1', namespace, <kind>, …]`, as containerd's bolt buckets do.
 */
export type MetaKey = readonly string[];

export interface ReadTx {
  get(key: MetaKey): Promise<Uint8Array | undefined>;
  getJSON<T>(key: MetaKey): Promise<T | undefined>;
  /** Entries whose key starts with `prefix` (whole segments), in key order. */
  range(prefix: MetaKey): AsyncIterable<[MetaKey, Uint8Array]>;
  /** True when any key starts with `prefix`. */
  has(prefix: MetaKey): Promise<boolean>;
}

export interface WriteTx extends ReadTx {
  put(key: MetaKey, value: Uint8Array): void;
  putJSON(key: MetaKey, value: unknown): void;
  del(key: MetaKey): void;
  /** Create the namespace if missing (no event, as containerd's implicit create). */
  ensureNamespace(namespace: string): Promise<void>;
  /** Runs after the batch is durable; publish events here. A hook that throws is logged, not returned. */
  onCommit(fn: () => void | Promise<void>): void;
}

export interface UpdateOptions {
  /**
   * false: the batch is written (a crash of the process loses nothing) but
   * not synced to disk before `update` returns; the next durable update
   * syncs it too. For records that are worth nothing after a power loss
   * anyway. Default true.
   */
  readonly durable?: boolean;
}

/**
 * Berth's metadata (LevelDB). Reads may run concurrently; writers run one at
 * a time and each `update` commits as a single atomic batch, so garbage
 * collection can take `exclusive` and see a stable store.
 */
export interface MetadataStore {
  view<R>(fn: (tx: ReadTx) => Promise<R>): Promise<R>;
  update<R>(fn: (tx: WriteTx) => Promise<R>, opts?: UpdateOptions): Promise<R>;
  /**
   * Run `fn` with no other writer active and none starting until it ends;
   * `locked` reads and writes without waiting for the lock `fn` holds.
   * Garbage collection sweeps metadata and then blobs inside one of these.
   */
  exclusive<R>(fn: (locked: Pick<MetadataStore, 'view' | 'update'>) => Promise<R>): Promise<R>;
  /** Bumped on every committed update; lets GC know whether anything changed. */
  readonly generation: number;
}
export const MetadataStore = token<MetadataStore>('MetadataStore');
