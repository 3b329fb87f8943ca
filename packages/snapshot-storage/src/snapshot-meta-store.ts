import {
  AlreadyExistsError,
  applyLabelPaths,
  errorMessage,
  FailedPreconditionError,
  type FieldAdaptor,
  InvalidArgumentError,
  type Labels,
  labelAdaptor,
  NotFoundError,
  parseFilters,
  type SnapshotInfo,
  type SnapshotKind,
  type SnapshotUsage,
  validateLabels,
} from '@berth/plugin-api';
import { Level } from 'level';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export const SNAPSHOT_SCHEMA_VERSION = 1;

/** What a snapshotter needs to build mounts: its directory id and those of its parents, nearest first. */
export interface StoredSnapshot {
  readonly id: string;
  readonly kind: SnapshotKind;
  /** Ids of the parent chain: `[parent, grandparent, …]`; empty for a base snapshot. */
  readonly parentIds: readonly string[];
}

export interface StoredInfo {
  readonly id: string;
  readonly info: SnapshotInfo;
  /** As recorded at commit; zero for active snapshots and views (measure those on disk). */
  readonly usage: SnapshotUsage;
}

export class SnapshotStoreOpenError extends Error {
  override name = 'SnapshotStoreOpenError';
}

/** One LevelDB record per snapshot, under its key or (once committed) its name. */
interface SnapshotRecord {
  id: number;
  kind: SnapshotKind;
  parent?: string;
  /** Ids of the ancestors, nearest first: fixed, since a parent outlives its children. */
  chain?: number[];
  labels: Labels;
  created: string;
  updated: string;
  size?: number;
  inodes?: number;
}

// Key layout: NUL separates parts (snapshot keys may hold any other character).
const SEP = '\u0000';
const SNAPSHOT = `s${SEP}`;
const CHILD = `c${SEP}`;
const SEQUENCE_KEY = `m${SEP}sequence`;
const SCHEMA_KEY = `m${SEP}schema`;
const snapshotKey = (key: string) => SNAPSHOT + key;
const childPrefix = (parentId: number) => `${CHILD}${parentId}${SEP}`;
const childKey = (parentId: number, childId: number) => childPrefix(parentId) + String(childId);
/** The first string after every key starting with `prefix` (prefixes here end in NUL). */
const prefixEnd = (prefix: string) => `${prefix.slice(0, -1)}\u0001`;

type Db = Level<string, string>;
type ReadOptions = { snapshot?: ReturnType<Db['snapshot']> };

function validateName(field: string, value: string): void {
  if (value === '') throw new InvalidArgumentError(`${field} must not be empty`);
  if (value.includes(SEP)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} contains a NUL character`);
}

/**
 * Reads of one transaction. A read-only transaction sees one LevelDB
 * snapshot, so a parent chain or a walk is never torn by a concurrent write.
 */
export class SnapshotReadTx {
  constructor(
    protected readonly db: Db,
    private readonly options: ReadOptions = {},
  ) {}

  protected async get(key: string): Promise<string | undefined> {
    return this.db.get(key, this.options);
  }

  protected async *range(prefix: string): AsyncIterable<[string, string]> {
    yield* this.db.iterator({ gte: prefix, lt: prefixEnd(prefix), ...this.options });
  }

  protected async record(key: string): Promise<SnapshotRecord | undefined> {
    const raw = await this.get(snapshotKey(key));
    return raw === undefined ? undefined : (JSON.parse(raw) as SnapshotRecord);
  }

  protected async mustRecord(key: string): Promise<SnapshotRecord> {
    validateName('snapshot key', key);
    const record = await this.record(key);
    if (!record) throw new NotFoundError(`snapshot ${JSON.stringify(key)} does not exist`);
    return record;
  }

  async getInfo(key: string): Promise<StoredInfo> {
    const record = await this.mustRecord(key);
    return { id: String(record.id), info: toInfo(key, record), usage: { size: record.size ?? 0, inodes: record.inodes ?? 0 } };
  }

  /** An active snapshot or view with its parent chain; a committed one is FailedPrecondition (it has no mounts). */
  async getSnapshot(key: string): Promise<StoredSnapshot> {
    const record = await this.mustRecord(key);
    if (record.kind === 'committed') {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is committed, not active or a view`);
    }
    return { id: String(record.id), kind: record.kind, parentIds: (await this.chainOf(record)).map(String) };
  }

  /** The ancestors' ids, nearest first: recorded with the snapshot, or walked when a record lacks them. */
  protected async chainOf(record: SnapshotRecord): Promise<number[]> {
    if (record.chain) return record.chain;
    const ids: number[] = [];
    let parent = record.parent;
    while (parent !== undefined) {
      const record = await this.record(parent);
      if (!record) throw new NotFoundError(`parent snapshot ${JSON.stringify(parent)} is missing from the chain`);
      ids.push(record.id);
      parent = record.parent;
    }
    return ids;
  }

  /**
   * Every snapshot matching any of `filters` (containerd's syntax; fields
   * `kind`, `name`, `parent`, `labels.<key>`), in key order.
   */
  async walk(fn: (info: SnapshotInfo) => Promise<void> | void, filters: readonly string[] = []): Promise<void> {
    const filter = parseFilters(filters);
    for await (const [k, raw] of this.range(SNAPSHOT)) {
      const info = toInfo(k.slice(SNAPSHOT.length), JSON.parse(raw) as SnapshotRecord);
      if (filter.match(snapshotAdaptor(info))) await fn(info);
    }
  }

  /** Directory id → snapshot key, for finding directories no snapshot owns. */
  async idMap(): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    for await (const [k, raw] of this.range(SNAPSHOT)) {
      ids.set(String((JSON.parse(raw) as SnapshotRecord).id), k.slice(SNAPSHOT.length));
    }
    return ids;
  }
}

/**
 * A write transaction: reads see its own pending writes; `SnapshotMetaStore.update`
 * writes them as one synced batch when the callback returns, and drops them if it throws.
 */
export class SnapshotWriteTx extends SnapshotReadTx {
  private readonly pending = new Map<string, string | undefined>();
  done = false;

  protected override async get(key: string): Promise<string | undefined> {
    return this.pending.has(key) ? this.pending.get(key) : super.get(key);
  }

  protected override async *range(prefix: string): AsyncIterable<[string, string]> {
    const merged = new Map<string, string | undefined>();
    for await (const [k, v] of super.range(prefix)) merged.set(k, v);
    for (const [k, v] of this.pending) if (k.startsWith(prefix)) merged.set(k, v);
    // Keys are compared as LevelDB does (UTF-8 bytes), not as JS strings (UTF-16 units).
    const keys = [...merged.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const k of keys) {
      const v = merged.get(k);
      if (v !== undefined) yield [k, v];
    }
  }

  private put(key: string, value: string): void {
    if (this.done) throw new Error('snapshot metadata transaction already ended');
    this.pending.set(key, value);
  }

  private del(key: string): void {
    if (this.done) throw new Error('snapshot metadata transaction already ended');
    this.pending.set(key, undefined);
  }

  private putRecord(key: string, record: SnapshotRecord): void {
    this.put(snapshotKey(key), JSON.stringify(record));
  }

  private async nextId(): Promise<number> {
    const id = Number((await this.get(SEQUENCE_KEY)) ?? '0') + 1;
    this.put(SEQUENCE_KEY, String(id));
    return id;
  }

  /**
   * A new active snapshot or view on `parent` (a committed snapshot), with a
   * new id. As containerd: a missing parent is NotFound, a parent that is not
   * committed InvalidArgument, a key in use AlreadyExists.
   */
  async createSnapshot(
    kind: SnapshotKind,
    key: string,
    parent: string | undefined,
    labels: Labels = {},
  ): Promise<StoredSnapshot> {
    if (kind !== 'active' && kind !== 'view') {
      throw new InvalidArgumentError(`snapshot kind ${JSON.stringify(kind)} invalid; only active snapshots and views can be created`);
    }
    validateName('snapshot key', key);
    validateLabels('labels', labels);
    let chain: number[] = [];
    let parentId: number | undefined;
    if (parent !== undefined && parent !== '') {
      validateName('parent', parent);
      const p = await this.record(parent);
      if (!p) throw new NotFoundError(`parent snapshot ${JSON.stringify(parent)} does not exist`);
      if (p.kind !== 'committed') {
        throw new InvalidArgumentError(`parent ${JSON.stringify(parent)} is not a committed snapshot`);
      }
      parentId = p.id;
      chain = [p.id, ...(await this.chainOf(p))];
    }
    if (await this.record(key)) throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)} already exists`);

    const id = await this.nextId();
    const now = new Date().toISOString();
    this.putRecord(key, {
      id,
      kind,
      ...(parentId !== undefined ? { parent, chain } : {}),
      labels: dropEmpty(labels),
      created: now,
      updated: now,
    });
    if (parentId !== undefined) this.put(childKey(parentId, id), key);
    return { id: String(id), kind, parentIds: chain.map(String) };
  }

  /** Labels only (`labels`, `labels.<key>`; no paths replaces them all); any other path is InvalidArgument. */
  async updateInfo(info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]): Promise<SnapshotInfo> {
    const record = await this.mustRecord(info.name);
    const labels = applyLabelPaths(record.labels, info.labels ?? {}, paths);
    validateLabels('labels', labels);
    const updated: SnapshotRecord = { ...record, labels, updated: new Date().toISOString() };
    this.putRecord(info.name, updated);
    return toInfo(info.name, updated);
  }

  /**
   * Turn active snapshot `key` into committed snapshot `name` with the same
   * id, recording `usage`; the committed snapshot carries `labels` only (as
   * containerd). Errors, checked in containerd's order: name in use
   * AlreadyExists, key missing NotFound, key not active FailedPrecondition.
   */
  async commitActive(key: string, name: string, usage: SnapshotUsage, labels: Labels = {}): Promise<string> {
    validateName('snapshot name', name);
    validateName('snapshot key', key);
    validateLabels('labels', labels);
    if (await this.record(name)) throw new AlreadyExistsError(`committed snapshot ${JSON.stringify(name)} already exists`);
    const record = await this.record(key);
    if (!record) throw new NotFoundError(`active snapshot ${JSON.stringify(key)} does not exist`);
    if (record.kind !== 'active') {
      throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is ${record.kind === 'view' ? 'a view' : 'committed'}, not active`);
    }
    const now = new Date().toISOString();
    this.putRecord(name, {
      id: record.id,
      kind: 'committed',
      ...(record.parent !== undefined ? { parent: record.parent, chain: await this.chainOf(record) } : {}),
      labels: dropEmpty(labels),
      created: now,
      updated: now,
      size: usage.size,
      inodes: usage.inodes,
    });
    this.del(snapshotKey(key));
    if (record.parent !== undefined) {
      const parent = await this.record(record.parent);
      if (!parent) throw new NotFoundError(`parent ${JSON.stringify(record.parent)} of snapshot ${JSON.stringify(key)} is missing`);
      this.put(childKey(parent.id, record.id), name);
    }
    return String(record.id);
  }

  /** Forget snapshot `key`; FailedPrecondition while it has children. Returns what the snapshotter must delete. */
  async remove(key: string): Promise<{ id: string; kind: SnapshotKind }> {
    const record = await this.mustRecord(key);
    for await (const _ of this.range(childPrefix(record.id))) {
      throw new FailedPreconditionError(`cannot remove snapshot ${JSON.stringify(key)}: it has children`);
    }
    if (record.parent !== undefined) {
      const parent = await this.record(record.parent);
      if (parent) this.del(childKey(parent.id, record.id));
    }
    this.del(snapshotKey(key));
    return { id: String(record.id), kind: record.kind };
  }

  operations(): Array<{ type: 'put'; key: string; value: string } | { type: 'del'; key: string }> {
    return [...this.pending].map(([key, value]) =>
      value === undefined ? { type: 'del' as const, key } : { type: 'put' as const, key, value },
    );
  }
}

function dropEmpty(labels: Labels): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
}

function toInfo(name: string, record: SnapshotRecord): SnapshotInfo {
  return {
    name,
    ...(record.parent !== undefined ? { parent: record.parent } : {}),
    kind: record.kind,
    labels: record.labels,
    createdAt: new Date(record.created),
    updatedAt: new Date(record.updated),
  };
}

/** containerd's snapshot filter fields: kind, name, parent (present even when empty), labels.<key>. */
function snapshotAdaptor(info: SnapshotInfo): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'kind':
        return info.kind;
      case 'name':
        return info.name;
      case 'parent':
        return info.parent ?? '';
      case 'labels':
        return labelAdaptor(info.labels, path);
      default:
        return undefined;
    }
  };
}

/**
 * Snapshot metadata of one snapshotter root in LevelDB (containerd keeps it
 * in `metadata.db`, bolt). Writers are serialised, one at a time, and each
 * `update` lands as one synced batch: a crash keeps all of it or none.
 * Reads run concurrently, each on a consistent LevelDB snapshot.
 */
export class SnapshotMetaStore {
  private writeLock: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly db: Db,
    readonly path: string,
  ) {}

  /** Open or create the database at `path`; refuses a damaged, locked or foreign one rather than repairing it. */
  static async open(path: string): Promise<SnapshotMetaStore> {
    if (existsSync(path) && readdirSync(path).length > 0 && !existsSync(join(path, 'CURRENT'))) {
      throw new SnapshotStoreOpenError(`snapshot metadata ${path} is damaged: its CURRENT file is missing; move it aside or restore a backup`);
    }
    await mkdir(path, { recursive: true, mode: 0o700 });
    const db: Db = new Level<string, string>(path, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new SnapshotStoreOpenError(`snapshot metadata ${path} is locked by another process (is another snapshotter using this root?)`);
      }
      throw new SnapshotStoreOpenError(`snapshot metadata ${path} cannot be opened: ${cause?.message ?? errorMessage(err)}`);
    }
    try {
      const version = await db.get(SCHEMA_KEY);
      if (version === undefined) {
        for await (const _ of db.keys({ limit: 1 })) {
          throw new SnapshotStoreOpenError(`snapshot metadata ${path} has records but no schema version`);
        }
        await db.put(SCHEMA_KEY, String(SNAPSHOT_SCHEMA_VERSION), { sync: true });
      } else if (Number(version) !== SNAPSHOT_SCHEMA_VERSION) {
        throw new SnapshotStoreOpenError(
          `snapshot metadata ${path} has schema version ${version}; this berth reads version ${SNAPSHOT_SCHEMA_VERSION}`,
        );
      }
    } catch (err) {
      await db.close();
      throw err;
    }
    return new SnapshotMetaStore(db, path);
  }

  /** A read-only transaction on one consistent snapshot of the database. */
  async view<R>(fn: (tx: SnapshotReadTx) => Promise<R>): Promise<R> {
    this.assertOpen();
    const snapshot = this.db.snapshot();
    try {
      return await fn(new SnapshotReadTx(this.db, { snapshot }));
    } finally {
      await snapshot.close();
    }
  }

  /**
   * A write transaction, run after every earlier one has ended. Its writes
   * become one synced batch when `fn` resolves; if `fn` throws, nothing is
   * written. `fn` may do filesystem work that must happen before the batch
   * (containerd renames the new directory into place inside its transaction).
   */
  update<R>(fn: (tx: SnapshotWriteTx) => Promise<R>): Promise<R> {
    this.assertOpen();
    const run = this.writeLock.then(async () => {
      const tx = new SnapshotWriteTx(this.db);
      try {
        const result = await fn(tx);
        const ops = tx.operations();
        if (ops.length > 0) await this.db.batch(ops, { sync: true });
        return result;
      } finally {
        tx.done = true;
      }
    });
    this.writeLock = run.catch(() => undefined);
    return run;
  }

  /** Waits for the writer in progress; closing twice is fine. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeLock;
    await this.db.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`snapshot metadata ${this.path} is closed`);
  }
}
