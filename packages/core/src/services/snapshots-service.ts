import {
  AlreadyExistsError,
  applyLabelPaths,
  EventExchange,
  FailedPreconditionError,
  type FieldAdaptor,
  InvalidArgumentError,
  labelAdaptor,
  type Labels,
  MetadataStore,
  type Mount,
  NotFoundError,
  NotImplementedError,
  parseFilters,
  type RequestContext,
  SnapshotLabel,
  type SnapshotInfo,
  Snapshotter,
  type SnapshotsService,
  type SnapshotUsage,
  Topic,
  validateLabels,
  type WriteTx,
} from '@berth/plugin-api';
import {
  parseJSON,
  SNAPSHOT_SEQUENCE,
  type SnapshotRecord,
  snapshotKey,
  snapshotsPrefix,
} from '../metadata/keys.js';
import { joinLease, listMatching, nowISO, requireNamespace } from './request.js';

const EventType = {
  prepare: 'containerd.events.SnapshotPrepare',
  commit: 'containerd.events.SnapshotCommit',
  remove: 'containerd.events.SnapshotRemove',
} as const;

/**
 * containerd's metadata snapshotter: namespaced keys over each snapshotter's
 * own keys (`<ns>/<seq>/<key>`), labels and parents kept in berth's metadata,
 * events on prepare/commit/remove, the caller's lease joined. Every change to
 * a snapshotter happens inside a metadata transaction, so garbage collection
 * (which holds the metadata lock) sees records and snapshots agree.
 */
export class SnapshotsServiceImpl implements SnapshotsService {
  constructor(
    private readonly snapshotters: ReadonlyMap<string, Snapshotter>,
    private readonly meta: MetadataStore,
    private readonly events: EventExchange,
  ) {}

  prepare(ctx: RequestContext, sn: string, key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    return this.create(ctx, sn, 'active', key, parent, labels);
  }

  view(ctx: RequestContext, sn: string, key: string, parent: string, labels: Labels = {}): Promise<Mount[]> {
    return this.create(ctx, sn, 'view', key, parent, labels);
  }

  private async create(
    ctx: RequestContext,
    sn: string,
    kind: 'active' | 'view',
    key: string,
    parent: string,
    labels: Labels,
  ): Promise<Mount[]> {
    const ns = requireNamespace(ctx);
    const backend = this.snapshotter(sn);
    if (!key) throw new InvalidArgumentError('snapshot key must not be empty');
    validateLabels('labels', labels);
    return this.meta.update(async (tx) => {
      if ((await tx.get(snapshotKey(ns, sn, key))) !== undefined) {
        throw new AlreadyExistsError(`snapshot ${JSON.stringify(key)}: already exists`);
      }
      const target = labels[SnapshotLabel.ref];
      if (target && (await tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, target)))?.kind === 'committed') {
        throw new AlreadyExistsError(`target snapshot ${JSON.stringify(target)}: already exists`);
      }
      let backendParent: string | undefined;
      if (parent) {
        const p = await tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, parent));
        if (!p) throw new NotFoundError(`parent snapshot ${JSON.stringify(parent)} does not exist: not found`);
        if (p.kind !== 'committed') throw new InvalidArgumentError(`parent ${JSON.stringify(parent)} is not committed snapshot`);
        backendParent = p.backendKey;
      }
      await tx.ensureNamespace(ns);
      const backendKey = await nextBackendKey(tx, ns, key);
      const mounts =
        kind === 'active'
          ? await backend.prepare(backendKey, backendParent, labels)
          : await backend.view(backendKey, backendParent, labels);
      const now = nowISO();
      const record: SnapshotRecord = { backendKey, parent, kind, labels: { ...labels }, createdAt: now, updatedAt: now };
      tx.putJSON(snapshotKey(ns, sn, key), record);
      await joinLease(tx, ctx, ns, `snapshots/${sn}`, key);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.SnapshotPrepare, { typeUrl: EventType.prepare, data: { key, parent, snapshotter: sn } }),
      );
      return mounts;
    });
  }

  async mounts(ctx: RequestContext, sn: string, key: string): Promise<Mount[]> {
    const { backend, record } = await this.lookup(ctx, sn, key);
    return backend.mounts(record.backendKey);
  }

  async commit(ctx: RequestContext, sn: string, name: string, key: string, labels: Labels = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    const backend = this.snapshotter(sn);
    if (!name) throw new InvalidArgumentError('snapshot name must not be empty');
    validateLabels('labels', labels);
    await this.meta.update(async (tx) => {
      const record = await tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, key));
      if (!record) throw notFound(key);
      if (record.kind !== 'active') throw new FailedPreconditionError(`snapshot ${JSON.stringify(key)} is not active`);
      if ((await tx.get(snapshotKey(ns, sn, name))) !== undefined) {
        throw new AlreadyExistsError(`snapshot ${JSON.stringify(name)}: already exists`);
      }
      const backendName = await nextBackendKey(tx, ns, name);
      await backend.commit(backendName, record.backendKey, labels);
      const now = nowISO();
      tx.del(snapshotKey(ns, sn, key));
      tx.putJSON(snapshotKey(ns, sn, name), {
        backendKey: backendName,
        parent: record.parent,
        kind: 'committed',
        labels: { ...labels },
        createdAt: now,
        updatedAt: now,
      } satisfies SnapshotRecord);
      await joinLease(tx, ctx, ns, `snapshots/${sn}`, name);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.SnapshotCommit, { typeUrl: EventType.commit, data: { key, name, snapshotter: sn } }),
      );
    });
  }

  async remove(ctx: RequestContext, sn: string, key: string): Promise<void> {
    const ns = requireNamespace(ctx);
    const backend = this.snapshotter(sn);
    await this.meta.update(async (tx) => {
      const record = await tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, key));
      if (!record) throw notFound(key);
      for await (const [, value] of tx.range(snapshotsPrefix(ns, sn))) {
        if (parseJSON<SnapshotRecord>(value).parent === key) {
          throw new FailedPreconditionError(`cannot remove snapshot ${JSON.stringify(key)} with child`);
        }
      }
      await backend.remove(record.backendKey);
      tx.del(snapshotKey(ns, sn, key));
      tx.onCommit(() =>
        this.events.publish(ns, Topic.SnapshotRemove, { typeUrl: EventType.remove, data: { key, snapshotter: sn } }),
      );
    });
  }

  async stat(ctx: RequestContext, sn: string, key: string): Promise<SnapshotInfo> {
    const { record } = await this.lookup(ctx, sn, key);
    return toInfo(key, record);
  }

  async update(ctx: RequestContext, sn: string, info: Pick<SnapshotInfo, 'name' | 'labels'>, paths: readonly string[]) {
    const ns = requireNamespace(ctx);
    this.snapshotter(sn);
    return this.meta.update(async (tx) => {
      const record = await tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, info.name));
      if (!record) throw notFound(info.name);
      const labels = applyLabelPaths(record.labels, info.labels ?? {}, paths);
      validateLabels('info.labels', labels);
      const next = { ...record, labels, updatedAt: nowISO() };
      tx.putJSON(snapshotKey(ns, sn, info.name), next);
      return toInfo(info.name, next);
    });
  }

  async list(ctx: RequestContext, sn: string, filters: readonly string[]): Promise<SnapshotInfo[]> {
    const ns = requireNamespace(ctx);
    this.snapshotter(sn);
    const filter = parseFilters(filters);
    return this.meta.view((tx) =>
      listMatching(tx, snapshotsPrefix(ns, sn), filter, (key, value) => toInfo(key[4] ?? '', parseJSON<SnapshotRecord>(value)), infoAdaptor),
    );
  }

  async usage(ctx: RequestContext, sn: string, key: string): Promise<SnapshotUsage> {
    const { backend, record } = await this.lookup(ctx, sn, key);
    return backend.usage(record.backendKey);
  }

  async cleanup(ctx: RequestContext, sn: string): Promise<void> {
    requireNamespace(ctx);
    const backend = this.snapshotter(sn);
    if (!backend.cleanup) throw new NotImplementedError(`snapshotter ${sn} does not support cleanup`);
    // Under the metadata lock: cleanup must not race a prepare that is creating a directory.
    await this.meta.exclusive(() => backend.cleanup?.() ?? Promise.resolve());
  }

  private snapshotter(name: string): Snapshotter {
    if (!name) throw new InvalidArgumentError('snapshotter argument missing');
    const s = this.snapshotters.get(name);
    if (!s) throw new InvalidArgumentError(`snapshotter not loaded: ${name}`);
    return s;
  }

  private async lookup(ctx: RequestContext, sn: string, key: string) {
    const ns = requireNamespace(ctx);
    const backend = this.snapshotter(sn);
    const record = await this.meta.view((tx) => tx.getJSON<SnapshotRecord>(snapshotKey(ns, sn, key)));
    if (!record) throw notFound(key);
    return { backend, record };
  }
}

async function nextBackendKey(tx: WriteTx, ns: string, key: string): Promise<string> {
  const raw = await tx.get(SNAPSHOT_SEQUENCE);
  const seq = (raw ? Number(Buffer.from(raw).toString('utf8')) : 0) + 1;
  tx.put(SNAPSHOT_SEQUENCE, Buffer.from(String(seq)));
  return `${ns}/${seq}/${key}`;
}

function notFound(key: string): NotFoundError {
  return new NotFoundError(`snapshot ${JSON.stringify(key)} does not exist: not found`);
}

function toInfo(name: string, r: SnapshotRecord): SnapshotInfo {
  return {
    name,
    ...(r.parent ? { parent: r.parent } : {}),
    kind: r.kind,
    labels: r.labels,
    createdAt: new Date(r.createdAt),
    updatedAt: new Date(r.updatedAt),
  };
}

function infoAdaptor(info: SnapshotInfo): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'kind':
        return info.kind;
      case 'name':
        return info.name;
      case 'parent':
        return info.parent;
      case 'labels':
        return labelAdaptor(info.labels, path);
      default:
        return undefined;
    }
  };
}
