import type { ServiceClient } from '@berth/api';
import type { Labels, Namespace } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';

/** containerd.services.namespaces.v1.Namespace as decoded. */
interface WireNamespace {
  name?: string;
  labels?: Record<string, string>;
}
interface NamespaceResponse {
  namespace?: WireNamespace | null;
}

const namespaceOf = (ns: WireNamespace | null | undefined): Namespace => ({ name: ns?.name ?? '', labels: ns?.labels ?? {} });

/**
 * containerd.services.namespaces.v1.Namespaces. These calls act on the named
 * namespace; the client's own namespace only travels as the caller's (it is
 * the namespace of the events they raise).
 */
export class NamespacesClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.namespaces.v1.Namespaces');
  }

  async list(opts?: RequestOptions): Promise<Namespace[]> {
    const res = await this.svc.unary<{ namespaces?: WireNamespace[] }>('List', {}, this.ctx.call(opts));
    return (res.namespaces ?? []).map(namespaceOf);
  }

  /** As containerd does, an unknown name answers with empty labels rather than NotFound. */
  async get(name: string, opts?: RequestOptions): Promise<Namespace> {
    const res = await this.svc.unary<NamespaceResponse>('Get', { name }, this.ctx.call(opts));
    return namespaceOf(res.namespace);
  }

  /** AlreadyExistsError when it exists; InvalidArgumentError for a bad name or label. */
  async create(name: string, labels: Labels = {}, opts?: RequestOptions): Promise<Namespace> {
    const res = await this.svc.unary<NamespaceResponse>('Create', { namespace: { name, labels } }, this.ctx.call(opts));
    return namespaceOf(res.namespace);
  }

  /**
   * `paths`: `labels` replaces all labels, `labels.<key>` sets one key (an
   * empty value removes it); none replaces all labels. As in containerd,
   * the daemon decides what an update of an unknown name does (containerd
   * creates it).
   */
  async update(name: string, labels: Labels, paths: readonly string[] = [], opts?: RequestOptions): Promise<Namespace> {
    const res = await this.svc.unary<NamespaceResponse>(
      'Update',
      { namespace: { name, labels }, updateMask: { paths: [...paths] } },
      this.ctx.call(opts),
    );
    return namespaceOf(res.namespace);
  }

  /** NotFoundError when absent; FailedPreconditionError while it still holds resources. */
  async delete(name: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Delete', { name }, this.ctx.call(opts));
  }
}
