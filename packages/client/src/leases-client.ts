import { type CallOptions, fromTimestamp, type ServiceClient, type Timestamp } from '@berth/api';
import { GcLabel, type Labels, type Lease, type LeaseResource } from '@berth/plugin-api';
import { randomBytes } from 'node:crypto';
import { ClientContext, type RequestOptions } from './client-context.js';

/** How long a lease made by `withLease` lives if its holder dies (containerd's client uses 24h too). */
export const DEFAULT_LEASE_EXPIRY_MS = 24 * 60 * 60 * 1000;

interface WireLease {
  id?: string;
  createdAt?: Timestamp | null;
  labels?: Record<string, string>;
}

const leaseFromWire = (l: WireLease | null | undefined): Lease => ({
  id: l?.id ?? '',
  createdAt: fromTimestamp(l?.createdAt),
  labels: l?.labels ?? {},
});

export interface CreateLeaseOptions extends RequestOptions {
  /** Generated (as containerd's client does) when absent. */
  readonly id?: string;
  readonly labels?: Labels;
  /** Sets `containerd.io/gc.expire` so GC drops the lease after this many milliseconds. */
  readonly expireAfterMs?: number;
}

/** `2024-05-01T10:00:00Z`: Go's RFC3339 in UTC, what containerd parses in gc.expire. */
export function rfc3339(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A lease id shaped like containerd's `leases.WithRandomID`: `<nanoseconds>-<random>` (hex, a valid identifier). */
export function randomLeaseId(): string {
  return `${process.hrtime()[1]}-${randomBytes(6).toString('hex')}`;
}

/**
 * A ClientContext whose calls carry the `containerd-lease` header: what the
 * daemon writes for them (content, ingests, snapshots) joins the lease.
 */
export class LeasedClientContext extends ClientContext {
  constructor(
    base: ClientContext,
    readonly lease: string,
  ) {
    super(base.connection, base.namespace, base.timeout);
  }

  /** Leases belong to a namespace: the sibling for another one carries none. */
  override withNamespace(namespace: string): ClientContext {
    return new ClientContext(this.connection, namespace, this.timeout);
  }

  override call(opts?: RequestOptions): CallOptions {
    return { ...super.call(opts), lease: this.lease };
  }

  override stream(opts?: RequestOptions): CallOptions {
    return { ...super.stream(opts), lease: this.lease };
  }
}

/** The lease a context's calls carry, if any. */
export function contextLease(ctx: ClientContext): string | undefined {
  return ctx instanceof LeasedClientContext ? ctx.lease : undefined;
}

/** containerd.services.leases.v1.Leases. */
export class LeasesClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.leases.v1.Leases');
  }

  /** AlreadyExistsError for a taken id. */
  async create(opts: CreateLeaseOptions = {}): Promise<Lease> {
    const labels: Record<string, string> = { ...opts.labels };
    if (opts.expireAfterMs && opts.expireAfterMs > 0) {
      labels[GcLabel.expire] = rfc3339(new Date(Date.now() + opts.expireAfterMs));
    }
    const res = await this.svc.unary<{ lease?: WireLease }>(
      'Create',
      { id: opts.id ?? randomLeaseId(), labels },
      this.ctx.call(opts),
    );
    return leaseFromWire(res.lease);
  }

  /** With `sync`, returns once garbage collection has removed what only this lease held. */
  async delete(id: string, opts: RequestOptions & { readonly sync?: boolean } = {}): Promise<void> {
    await this.svc.unary('Delete', { id, sync: !!opts.sync }, this.ctx.call(opts));
  }

  /** Leases matching any of the filters (`id==…`, `labels."k"==v`); none means all. */
  async list(filters: readonly string[] = [], opts?: RequestOptions): Promise<Lease[]> {
    const res = await this.svc.unary<{ leases?: WireLease[] }>('List', { filters: [...filters] }, this.ctx.call(opts));
    return (res.leases ?? []).map(leaseFromWire);
  }

  /** Resource types: `content` (digest), `ingests` (ref), `snapshots/<snapshotter>` (key). */
  async addResource(id: string, resource: LeaseResource, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('AddResource', { id, resource }, this.ctx.call(opts));
  }

  async deleteResource(id: string, resource: LeaseResource, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('DeleteResource', { id, resource }, this.ctx.call(opts));
  }

  async listResources(id: string, opts?: RequestOptions): Promise<LeaseResource[]> {
    const res = await this.svc.unary<{ resources?: { id?: string; type?: string }[] }>(
      'ListResources',
      { id },
      this.ctx.call(opts),
    );
    return (res.resources ?? []).map((r) => ({ id: r.id ?? '', type: r.type ?? '' }));
  }
}
