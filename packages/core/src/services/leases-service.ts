import {
  AlreadyExistsError,
  dropEmptyLabels,
  type FieldAdaptor,
  GarbageCollector,
  InvalidArgumentError,
  labelAdaptor,
  type Lease,
  type LeaseResource,
  type LeasesService,
  MetadataStore,
  NotFoundError,
  NotImplementedError,
  parseFilters,
  type RequestContext,
  validateDigest,
  validateLabels,
} from '@berth/plugin-api';
import { inject, injectable, optional } from 'inversify';
import { randomBytes } from 'node:crypto';
import {
  type LeaseRecord,
  leaseKey,
  leaseResourceKey,
  leaseResourcesPrefix,
  leasesPrefix,
  parseJSON,
} from '../metadata/keys.js';
import { listMatching, nowISO, requireNamespace } from './request.js';

/** containerd's leases: named holds on content, ingests and snapshots, released on delete or expiry. */
@injectable()
export class LeasesServiceImpl implements LeasesService {
  constructor(
    @inject(MetadataStore.key) private readonly meta: MetadataStore,
    @inject(GarbageCollector.key) @optional() private readonly gc?: GarbageCollector,
  ) {}

  async create(ctx: RequestContext, input: { id?: string; labels?: Record<string, string> }): Promise<Lease> {
    const ns = requireNamespace(ctx);
    const id = input.id || generateId();
    // containerd takes any lease id (ctr makes ids like "267566458--2yY"); only NUL cannot be stored.
    if (id.includes('\u0000')) throw new InvalidArgumentError('lease.id must not contain NUL');
    const labels = dropEmptyLabels(input.labels ?? {});
    validateLabels('lease.labels', labels);
    return this.meta.update(async (tx) => {
      if ((await tx.get(leaseKey(ns, id))) !== undefined) throw new AlreadyExistsError(`lease "${id}": already exists`);
      await tx.ensureNamespace(ns);
      const record: LeaseRecord = { labels, createdAt: nowISO() };
      tx.putJSON(leaseKey(ns, id), record);
      return toLease(id, record);
    });
  }

  async delete(ctx: RequestContext, id: string, opts: { sync?: boolean } = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    await this.meta.update(async (tx) => {
      if ((await tx.get(leaseKey(ns, id))) === undefined) throw new NotFoundError(`lease "${id}": not found`);
      for await (const [key] of tx.range(leaseKey(ns, id))) tx.del(key);
      tx.del(leaseKey(ns, id));
    });
    if (opts.sync) await this.gc?.collect();
    else this.gc?.schedule();
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Lease[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    // Resources sit under their lease's key: only the lease records themselves are listed.
    return this.meta.view((tx) =>
      listMatching(
        tx,
        leasesPrefix(ns),
        filter,
        (key, value) => (key.length === 4 ? toLease(key[3] ?? '', parseJSON<LeaseRecord>(value)) : undefined),
        leaseAdaptor,
      ),
    );
  }

  async addResource(ctx: RequestContext, id: string, resource: LeaseResource): Promise<void> {
    const ns = requireNamespace(ctx);
    validateResource(resource);
    await this.meta.update(async (tx) => {
      if ((await tx.get(leaseKey(ns, id))) === undefined) throw new NotFoundError(`lease "${id}": not found`);
      tx.put(leaseResourceKey(ns, id, resource.type, resource.id), new Uint8Array());
    });
  }

  async deleteResource(ctx: RequestContext, id: string, resource: LeaseResource): Promise<void> {
    const ns = requireNamespace(ctx);
    validateResource(resource);
    await this.meta.update(async (tx) => {
      if ((await tx.get(leaseKey(ns, id))) === undefined) throw new NotFoundError(`lease "${id}": not found`);
      tx.del(leaseResourceKey(ns, id, resource.type, resource.id));
    });
    this.gc?.schedule();
  }

  async listResources(ctx: RequestContext, id: string): Promise<LeaseResource[]> {
    const ns = requireNamespace(ctx);
    return this.meta.view(async (tx) => {
      if ((await tx.get(leaseKey(ns, id))) === undefined) throw new NotFoundError(`lease "${id}": not found`);
      const out: LeaseResource[] = [];
      for await (const [key] of tx.range(leaseResourcesPrefix(ns, id))) out.push({ type: key[5] ?? '', id: key[6] ?? '' });
      return out;
    });
  }
}

/** containerd's resource types: content, ingests, snapshots/<snapshotter>. */
function validateResource(r: LeaseResource): void {
  if (!r?.id) throw new InvalidArgumentError('resource.id must not be empty');
  if (r.type === 'content') validateDigest('resource.id', r.id);
  else if (r.type === 'ingests') return;
  else if (r.type.startsWith('snapshots/') && r.type.length > 'snapshots/'.length) return;
  else throw new NotImplementedError(`unsupported resource type ${JSON.stringify(r.type)}`);
}

function generateId(): string {
  return `${Date.now()}-${randomBytes(6).toString('hex')}`;
}

function toLease(id: string, r: LeaseRecord): Lease {
  return { id, labels: r.labels, createdAt: new Date(r.createdAt) };
}

function leaseAdaptor(lease: Lease): FieldAdaptor {
  return (path) => (path[0] === 'id' ? lease.id : path[0] === 'labels' ? labelAdaptor(lease.labels, path) : undefined);
}
