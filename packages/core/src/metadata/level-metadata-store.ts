import {
  InvalidArgumentError,
  type MetadataStore,
  type MetaKey,
  type ReadTx,
  type UpdateOptions,
  type WriteTx,
  errorMessage,
} from '@berth/plugin-api';
import { Level } from 'level';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { namespaceKey, type NamespaceRecord } from './keys.js';

export const SCHEMA_VERSION = 1;
const SCHEMA_KEY: MetaKey = ['berth', 'schema'];
const SEP = '\u0000';
const END = '\u0001';

export class MetadataOpenError extends Error {
  override name = 'MetadataOpenError';
}

/** Called when an onCommit hook throws: the batch is durable, so the update itself still succeeds. */
export type HookErrorHandler = (err: unknown) => void;

function encodeKey(key: MetaKey): string {
  for (const part of key) {
    if (part.includes(SEP)) throw new InvalidArgumentError(`metadata key segment contains a NUL character`);
  }
  return key.join(SEP);
}

const decodeKey = (key: string): MetaKey => key.split(SEP);
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * Metadata in LevelDB. Writes are serialised (one writer at a time) and
 * each `update` lands as one synced batch, so a crash leaves either all of
 * a change or none of it.
 */
export class LevelMetadataStore implements MetadataStore {
  private writeLock: Promise<unknown> = Promise.resolve();
  private gen = 0;

  private constructor(
    private readonly db: Level<string, Uint8Array>,
    readonly path: string,
    private readonly onHookError: HookErrorHandler,
  ) {}

  /**
   * Open (or create) the store. Refuses — never repairs — a database that is
   * locked, corrupt, half-missing or of an unknown schema, since repairing
   * can drop records silently.
   */
  static async open(
    path: string,
    onHookError: HookErrorHandler = (err) => process.stderr.write(`metadata commit hook failed: ${errorMessage(err)}\n`),
  ): Promise<LevelMetadataStore> {
    if (existsSync(path) && readdirSync(path).length > 0 && !existsSync(join(path, 'CURRENT'))) {
      throw new MetadataOpenError(
        `metadata database ${path} is damaged: its CURRENT file is missing; berthd will not recreate it over existing files (move the directory aside or restore a backup)`,
      );
    }
    await mkdir(path, { recursive: true });
    const db = new Level<string, Uint8Array>(path, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new MetadataOpenError(`metadata database ${path} is locked by another process (is another berthd using this root?)`);
      }
      const detail = cause?.message ?? errorMessage(err);
      throw new MetadataOpenError(
        `metadata database ${path} cannot be opened: ${detail}; berthd will not repair it automatically (that can lose data): move it aside or restore a backup`,
      );
    }
    const store = new LevelMetadataStore(db, path, onHookError);
    try {
      await store.checkSchema();
    } catch (err) {
      await db.close();
      throw err;
    }
    return store;
  }

  private async checkSchema(): Promise<void> {
    const raw = await this.db.get(encodeKey(SCHEMA_KEY));
    if (raw === undefined) {
      for await (const _ of this.db.keys({ limit: 1 })) {
        throw new MetadataOpenError(`metadata database ${this.path} has records but no schema version; it was not written by berthd`);
      }
      await this.db.put(encodeKey(SCHEMA_KEY), textEncoder.encode(String(SCHEMA_VERSION)), { sync: true });
      return;
    }
    const version = Number(textDecoder.decode(raw));
    if (version !== SCHEMA_VERSION) {
      throw new MetadataOpenError(
        `metadata database ${this.path} has schema version ${textDecoder.decode(raw)}; this berthd reads version ${SCHEMA_VERSION}`,
      );
    }
  }

  get generation(): number {
    return this.gen;
  }

  async view<R>(fn: (tx: ReadTx) => Promise<R>): Promise<R> {
    return fn(new LevelReadTx(this.db));
  }

  update<R>(fn: (tx: WriteTx) => Promise<R>, opts?: UpdateOptions): Promise<R> {
    return this.serialise(() => this.commit(fn, opts?.durable ?? true)).then(async ({ result, hooks }) => {
      await this.runHooks(hooks);
      return result;
    });
  }

  exclusive<R>(fn: (locked: Pick<MetadataStore, 'view' | 'update'>) => Promise<R>): Promise<R> {
    const locked: Pick<MetadataStore, 'view' | 'update'> = {
      view: (f) => this.view(f),
      update: async (f, opts) => {
        const { result, hooks } = await this.commit(f, opts?.durable ?? true);
        await this.runHooks(hooks);
        return result;
      },
    };
    return this.serialise(() => fn(locked));
  }

  /** Every hook runs; one that throws is reported, not allowed to fail an update that is already durable. */
  private async runHooks(hooks: ReadonlyArray<() => void | Promise<void>>): Promise<void> {
    for (const hook of hooks) {
      try {
        await hook();
      } catch (err) {
        this.onHookError(err);
      }
    }
  }

  /** One transaction: run `fn`, then write its operations as one batch, synced when `durable`. Caller holds the lock. */
  private async commit<R>(fn: (tx: WriteTx) => Promise<R>, durable: boolean) {
    const tx = new LevelWriteTx(this.db);
    const result = await fn(tx);
    const ops = tx.operations();
    if (ops.length > 0) {
      await this.db.batch(ops, { sync: durable });
      this.gen++;
    }
    tx.committed = true;
    return { result, hooks: tx.hooks };
  }

  private serialise<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.writeLock.then(fn, fn);
    this.writeLock = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.writeLock;
    await this.db.close();
  }
}

/** Entries fetched per native call when reading a range: one call covers any realistic prefix. */
const RANGE_BATCH = 1000;

class LevelReadTx implements ReadTx {
  constructor(protected readonly db: Level<string, Uint8Array>) {}

  /**
   * A point lookup, read synchronously. In a metadata database this size the
   * lookup is served from LevelDB's memtable or block cache (or the page
   * cache) in microseconds, while the asynchronous `get` adds a libuv
   * thread-pool hop, an N-API async work item and a promise to every read —
   * several times the cost of the lookup itself, paid on every RPC, and
   * queued behind file I/O in the same small thread pool. containerd's bolt
   * reads are synchronous memory-mapped reads too. The method stays async
   * (the ReadTx contract), so callers see no difference.
   */
  async get(key: MetaKey): Promise<Uint8Array | undefined> {
    return this.db.getSync(encodeKey(key));
  }

  async getJSON<T>(key: MetaKey): Promise<T | undefined> {
    const raw = await this.get(key);
    return raw === undefined ? undefined : (JSON.parse(textDecoder.decode(raw)) as T);
  }

  /**
   * The entries under `prefix`, in key order. Read with `nextv` rather than
   * `for await`: the async iterator fetches one entry first and then a batch,
   * two thread-pool round trips for what one `nextv` call returns.
   */
  async *range(prefix: MetaKey): AsyncIterable<[MetaKey, Uint8Array]> {
    const base = encodeKey(prefix);
    const it = this.db.iterator({ gte: base + SEP, lt: base + END });
    try {
      for (;;) {
        const entries = await it.nextv(RANGE_BATCH);
        if (entries.length === 0) break;
        for (const [k, v] of entries) yield [decodeKey(k), v];
      }
    } finally {
      await it.close();
    }
  }

  async has(prefix: MetaKey): Promise<boolean> {
    const base = encodeKey(prefix);
    const first = await this.db.keys({ gte: base + SEP, lt: base + END, limit: 1 }).all();
    return first.length > 0;
  }
}

type BatchOp = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

class LevelWriteTx extends LevelReadTx implements WriteTx {
  /** Pending writes by encoded key; undefined marks a delete. */
  private readonly pending = new Map<string, Uint8Array | undefined>();
  readonly hooks: Array<() => void | Promise<void>> = [];
  committed = false;

  override async get(key: MetaKey): Promise<Uint8Array | undefined> {
    const k = encodeKey(key);
    return this.pending.has(k) ? this.pending.get(k) : super.get(key);
  }

  override async *range(prefix: MetaKey): AsyncIterable<[MetaKey, Uint8Array]> {
    const base = encodeKey(prefix) + SEP;
    // Nothing written under the prefix yet (the common case): the stored
    // entries as they are, without re-encoding, merging and sorting them.
    if (!this.hasPendingUnder(base)) {
      yield* super.range(prefix);
      return;
    }
    const merged = new Map<string, Uint8Array | undefined>();
    for await (const [k, v] of super.range(prefix)) merged.set(encodeKey(k), v);
    for (const [k, v] of this.pending) if (k.startsWith(base)) merged.set(k, v);
    for (const k of [...merged.keys()].sort()) {
      const v = merged.get(k);
      if (v !== undefined) yield [decodeKey(k), v];
    }
  }

  override async has(prefix: MetaKey): Promise<boolean> {
    // Pending writes under the prefix change the answer: ask the merged view.
    if (this.hasPendingUnder(encodeKey(prefix) + SEP)) {
      for await (const _ of this.range(prefix)) return true;
      return false;
    }
    return super.has(prefix);
  }

  private hasPendingUnder(base: string): boolean {
    for (const k of this.pending.keys()) if (k.startsWith(base)) return true;
    return false;
  }

  put(key: MetaKey, value: Uint8Array): void {
    this.assertOpen();
    this.pending.set(encodeKey(key), value);
  }

  putJSON(key: MetaKey, value: unknown): void {
    this.put(key, textEncoder.encode(JSON.stringify(value)));
  }

  del(key: MetaKey): void {
    this.assertOpen();
    this.pending.set(encodeKey(key), undefined);
  }

  async ensureNamespace(namespace: string): Promise<void> {
    if ((await this.get(namespaceKey(namespace))) === undefined) {
      const record: NamespaceRecord = { labels: {}, createdAt: new Date().toISOString() };
      this.putJSON(namespaceKey(namespace), record);
    }
  }

  onCommit(fn: () => void | Promise<void>): void {
    this.hooks.push(fn);
  }

  operations(): BatchOp[] {
    return [...this.pending].map(([key, value]) =>
      value === undefined ? { type: 'del', key } : { type: 'put', key, value },
    );
  }

  private assertOpen(): void {
    if (this.committed) throw new Error('metadata transaction already committed');
  }
}
