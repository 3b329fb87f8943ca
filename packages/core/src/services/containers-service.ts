import {
  AlreadyExistsError,
  type AnyValue,
  applyLabelPaths,
  type Container,
  type ContainerInput,
  type ContainersService,
  EventExchange,
  type FieldAdaptor,
  GarbageCollector,
  InvalidArgumentError,
  labelAdaptor,
  MetadataStore,
  NotFoundError,
  parseFilters,
  type RequestContext,
  Topic,
  validateIdentifier,
  validateLabels,
} from '@berth/plugin-api';
import { inject, injectable, optional } from 'inversify';
import { type AnyRecord, type ContainerRecord, containerKey, containersPrefix, parseJSON } from '../metadata/keys.js';
import { listMatching, nowISO, requireNamespace } from './request.js';

const EventType = {
  create: 'containerd.events.ContainerCreate',
  update: 'containerd.events.ContainerUpdate',
  delete: 'containerd.events.ContainerDelete',
} as const;

/** containerd's container metadata: validated, namespaced, with events; runtime and snapshotter are immutable. */
@injectable()
export class ContainersServiceImpl implements ContainersService {
  constructor(
    @inject(MetadataStore.key) private readonly meta: MetadataStore,
    @inject(EventExchange.key) private readonly events: EventExchange,
    @inject(GarbageCollector.key) @optional() private readonly gc?: GarbageCollector,
  ) {}

  async get(ctx: RequestContext, id: string): Promise<Container> {
    const ns = requireNamespace(ctx);
    validateIdentifier('id', id);
    const record = await this.meta.view((tx) => tx.getJSON<ContainerRecord>(containerKey(ns, id)));
    if (!record) throw notFound(id);
    return toContainer(id, record);
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Container[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    return this.meta.view((tx) =>
      listMatching(tx, containersPrefix(ns), filter, (key, value) => toContainer(key[3] ?? '', parseJSON<ContainerRecord>(value)), containerAdaptor),
    );
  }

  async create(ctx: RequestContext, input: ContainerInput): Promise<Container> {
    const ns = requireNamespace(ctx);
    validate(input);
    return this.meta.update(async (tx) => {
      if ((await tx.get(containerKey(ns, input.id))) !== undefined) {
        throw new AlreadyExistsError(`container "${input.id}": already exists`);
      }
      await tx.ensureNamespace(ns);
      const now = nowISO();
      const record: ContainerRecord = {
        labels: { ...(input.labels ?? {}) },
        image: input.image ?? '',
        runtime: { name: input.runtime.name, ...(input.runtime.options ? { options: anyRecord(input.runtime.options) } : {}) },
        ...(input.spec ? { spec: anyRecord(input.spec) } : {}),
        snapshotter: input.snapshotter ?? '',
        snapshotKey: input.snapshotKey ?? '',
        extensions: Object.fromEntries(Object.entries(input.extensions ?? {}).map(([k, v]) => [k, anyRecord(v)])),
        sandbox: input.sandbox ?? '',
        createdAt: now,
        updatedAt: now,
      };
      tx.putJSON(containerKey(ns, input.id), record);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.ContainerCreate, {
          typeUrl: EventType.create,
          data: { id: input.id, image: record.image, runtime: { name: record.runtime.name } },
        }),
      );
      return toContainer(input.id, record);
    });
  }

  async update(ctx: RequestContext, input: ContainerInput, paths: readonly string[]): Promise<Container> {
    const ns = requireNamespace(ctx);
    validateIdentifier('container.id', input.id);
    return this.meta.update(async (tx) => {
      const current = await tx.getJSON<ContainerRecord>(containerKey(ns, input.id));
      if (!current) throw notFound(input.id);
      const next: ContainerRecord = { ...current, updatedAt: nowISO() };
      if (paths.length === 0) {
        if (input.runtime?.name && input.runtime.name !== current.runtime.name) {
          throw new InvalidArgumentError(`container.runtime.name: field is immutable`);
        }
        if (input.snapshotter && input.snapshotter !== current.snapshotter) {
          throw new InvalidArgumentError(`container.snapshotter: field is immutable`);
        }
        next.labels = { ...(input.labels ?? {}) };
        next.image = input.image ?? '';
        next.snapshotKey = input.snapshotKey ?? '';
        if (input.spec) next.spec = anyRecord(input.spec);
        next.extensions = Object.fromEntries(Object.entries(input.extensions ?? {}).map(([k, v]) => [k, anyRecord(v)]));
      } else {
        const labelPaths = paths.filter((p) => p === 'labels' || p.startsWith('labels.'));
        if (labelPaths.length > 0) next.labels = applyLabelPaths(current.labels, input.labels ?? {}, labelPaths);
        for (const path of paths) {
          if (path === 'labels' || path.startsWith('labels.')) continue;
          if (path === 'spec') {
            if (!input.spec) throw new InvalidArgumentError('container.spec must be set');
            next.spec = anyRecord(input.spec);
          } else if (path === 'image') next.image = input.image ?? '';
          else if (path === 'snapshotkey') next.snapshotKey = input.snapshotKey ?? '';
          else if (path === 'extensions') {
            next.extensions = Object.fromEntries(Object.entries(input.extensions ?? {}).map(([k, v]) => [k, anyRecord(v)]));
          } else if (path.startsWith('extensions.')) {
            const name = path.slice('extensions.'.length);
            const ext = input.extensions?.[name];
            const extensions = { ...next.extensions };
            if (ext) extensions[name] = anyRecord(ext);
            else delete extensions[name];
            next.extensions = extensions;
          } else {
            throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on container "${input.id}"`);
          }
        }
      }
      validateLabels('container.labels', next.labels);
      if (next.snapshotKey && !next.snapshotter) throw new InvalidArgumentError('container.snapshotter must be set with a snapshot key');
      tx.putJSON(containerKey(ns, input.id), next);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.ContainerUpdate, {
          typeUrl: EventType.update,
          data: { id: input.id, image: next.image, labels: next.labels, snapshotKey: next.snapshotKey },
        }),
      );
      return toContainer(input.id, next);
    });
  }

  async delete(ctx: RequestContext, id: string): Promise<void> {
    const ns = requireNamespace(ctx);
    validateIdentifier('id', id);
    await this.meta.update(async (tx) => {
      if ((await tx.get(containerKey(ns, id))) === undefined) throw notFound(id);
      tx.del(containerKey(ns, id));
      tx.onCommit(async () => {
        await this.events.publish(ns, Topic.ContainerDelete, { typeUrl: EventType.delete, data: { id } });
        this.gc?.schedule();
      });
    });
  }
}

function validate(c: ContainerInput): void {
  validateIdentifier('container.id', c.id);
  validateLabels('container.labels', c.labels ?? {});
  if (!c.runtime?.name) throw new InvalidArgumentError('container.runtime.name must be set');
  if (!c.spec?.typeUrl) throw new InvalidArgumentError('container.spec must be set');
  if (c.snapshotKey && !c.snapshotter) throw new InvalidArgumentError('container.snapshotter must be set with a snapshot key');
  for (const name of Object.keys(c.extensions ?? {})) {
    if (!name) throw new InvalidArgumentError('container.extensions: key must not be empty');
  }
}

function notFound(id: string): NotFoundError {
  return new NotFoundError(`container "${id}": not found`);
}

const anyRecord = (a: AnyValue): AnyRecord => ({ typeUrl: a.typeUrl, value: Buffer.from(a.value).toString('base64') });
const anyValue = (a: AnyRecord): AnyValue => ({ typeUrl: a.typeUrl, value: Buffer.from(a.value, 'base64') });

function toContainer(id: string, r: ContainerRecord): Container {
  return {
    id,
    labels: r.labels,
    image: r.image,
    runtime: { name: r.runtime.name, ...(r.runtime.options ? { options: anyValue(r.runtime.options) } : {}) },
    ...(r.spec ? { spec: anyValue(r.spec) } : {}),
    snapshotter: r.snapshotter,
    snapshotKey: r.snapshotKey,
    extensions: Object.fromEntries(Object.entries(r.extensions).map(([k, v]) => [k, anyValue(v)])),
    sandbox: r.sandbox,
    createdAt: new Date(r.createdAt),
    updatedAt: new Date(r.updatedAt),
  };
}

function containerAdaptor(c: Container): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'id':
        return c.id;
      case 'image':
        return c.image || undefined;
      case 'runtime':
        return path[1] === 'name' ? c.runtime.name : undefined;
      case 'snapshotter':
        return c.snapshotter || undefined;
      case 'labels':
        return labelAdaptor(c.labels, path);
      default:
        return undefined;
    }
  };
}
