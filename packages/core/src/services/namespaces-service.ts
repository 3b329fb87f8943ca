import {
  AlreadyExistsError,
  applyLabelPaths,
  EventExchange,
  FailedPreconditionError,
  MetadataStore,
  type Namespace,
  type NamespacesService,
  NotFoundError,
  type RequestContext,
  Topic,
  validateIdentifier,
  validateLabels,
} from '@berth/plugin-api';
import { inject, injectable } from 'inversify';
import {
  KIND_NAMES,
  NAMESPACES_PREFIX,
  namespaceKey,
  type NamespaceRecord,
  namespaceResourcesPrefix,
} from '../metadata/keys.js';

/** Event type names as containerd's protobuf packages declare them. */
const EventType = {
  create: 'containerd.events.NamespaceCreate',
  update: 'containerd.events.NamespaceUpdate',
  delete: 'containerd.events.NamespaceDelete',
} as const;

/**
 * Namespaces as containerd keeps them: validated names and labels, stored in
 * the metadata store, with an event for every change. Events carry the
 * caller's namespace (the `containerd-namespace` header), or the affected
 * namespace when the caller sent none.
 */
@injectable()
export class NamespacesServiceImpl implements NamespacesService {
  constructor(
    @inject(MetadataStore.key) private readonly store: MetadataStore,
    @inject(EventExchange.key) private readonly events: EventExchange,
  ) {}

  async get(_ctx: RequestContext, name: string): Promise<Namespace> {
    validateIdentifier('name', name);
    const record = await this.store.view((tx) => tx.getJSON<NamespaceRecord>(namespaceKey(name)));
    return { name, labels: record?.labels ?? {} };
  }

  async list(_ctx: RequestContext): Promise<Namespace[]> {
    return this.store.view(async (tx) => {
      const out: Namespace[] = [];
      for await (const [key, value] of tx.range(NAMESPACES_PREFIX)) {
        const record = JSON.parse(Buffer.from(value).toString('utf8')) as NamespaceRecord;
        out.push({ name: key[1] ?? '', labels: record.labels });
      }
      return out;
    });
  }

  async create(ctx: RequestContext, ns: Namespace): Promise<Namespace> {
    validateIdentifier('namespace.name', ns.name);
    const labels = { ...(ns.labels ?? {}) };
    validateLabels('namespace.labels', labels);
    return this.store.update(async (tx) => {
      if ((await tx.get(namespaceKey(ns.name))) !== undefined) {
        throw new AlreadyExistsError(`namespace "${ns.name}": already exists`);
      }
      const record: NamespaceRecord = { labels, createdAt: new Date().toISOString() };
      tx.putJSON(namespaceKey(ns.name), record);
      const created = { name: ns.name, labels };
      tx.onCommit(() => this.publish(ctx, ns.name, Topic.NamespaceCreate, EventType.create, created));
      return created;
    });
  }

  /** As containerd, an update of a namespace that does not exist creates it. */
  async update(ctx: RequestContext, ns: Namespace, paths: readonly string[]): Promise<Namespace> {
    validateIdentifier('namespace.name', ns.name);
    return this.store.update(async (tx) => {
      const record = (await tx.getJSON<NamespaceRecord>(namespaceKey(ns.name))) ?? {
        labels: {},
        createdAt: new Date().toISOString(),
      };
      const labels = applyLabelPaths(record.labels, ns.labels ?? {}, paths);
      validateLabels('namespace.labels', labels);
      tx.putJSON(namespaceKey(ns.name), { ...record, labels });
      const updated = { name: ns.name, labels };
      tx.onCommit(() => this.publish(ctx, ns.name, Topic.NamespaceUpdate, EventType.update, updated));
      return updated;
    });
  }

  async delete(ctx: RequestContext, name: string): Promise<void> {
    validateIdentifier('name', name);
    await this.store.update(async (tx) => {
      if ((await tx.get(namespaceKey(name))) === undefined) throw new NotFoundError(`namespace "${name}": not found`);
      const kinds = new Set<string>();
      for await (const [key] of tx.range(namespaceResourcesPrefix(name))) {
        if (key[2]) kinds.add(KIND_NAMES[key[2]] ?? key[2]);
      }
      if (kinds.size > 0) {
        throw new FailedPreconditionError(`namespace "${name}" must be empty, but it still has ${[...kinds].join(', ')}`);
      }
      tx.del(namespaceKey(name));
      tx.onCommit(() => this.publish(ctx, name, Topic.NamespaceDelete, EventType.delete, { name }));
    });
  }

  private publish(ctx: RequestContext, affected: string, topic: string, typeUrl: string, data: Record<string, unknown>) {
    return this.events.publish(ctx.namespace ?? affected, topic, { typeUrl, data });
  }
}
