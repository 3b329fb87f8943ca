import {
  AlreadyExistsError,
  applyLabelPaths,
  dropEmptyLabels,
  type Descriptor,
  EventExchange,
  FailedPreconditionError,
  type FieldAdaptor,
  GarbageCollector,
  type Image,
  type ImageInput,
  type ImagesService,
  InvalidArgumentError,
  labelAdaptor,
  MetadataStore,
  NotFoundError,
  parseFilters,
  type RequestContext,
  Topic,
  validateDigest,
  validateLabels,
} from '@berth/plugin-api';
import { inject, injectable, optional } from 'inversify';
import { type ImageRecord, imageKey, imagesPrefix, parseJSON } from '../metadata/keys.js';
import { listMatching, nowISO, requireNamespace } from './request.js';

const EventType = {
  create: 'containerd.services.images.v1.ImageCreate',
  update: 'containerd.services.images.v1.ImageUpdate',
  delete: 'containerd.services.images.v1.ImageDelete',
} as const;

/** containerd's image store: names → target descriptors, labels, events; a GC root for its target. */
@injectable()
export class ImagesServiceImpl implements ImagesService {
  constructor(
    @inject(MetadataStore.key) private readonly meta: MetadataStore,
    @inject(EventExchange.key) private readonly events: EventExchange,
    @inject(GarbageCollector.key) @optional() private readonly gc?: GarbageCollector,
  ) {}

  async get(ctx: RequestContext, name: string): Promise<Image> {
    const ns = requireNamespace(ctx);
    if (!name) throw new InvalidArgumentError('image name must not be empty');
    const record = await this.meta.view((tx) => tx.getJSON<ImageRecord>(imageKey(ns, name)));
    if (!record) throw new NotFoundError(`image "${name}": not found`);
    return toImage(name, record);
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]> {
    const ns = requireNamespace(ctx);
    const filter = parseFilters(filters);
    return this.meta.view((tx) =>
      listMatching(tx, imagesPrefix(ns), filter, (key, value) => toImage(key[3] ?? '', parseJSON<ImageRecord>(value)), imageAdaptor),
    );
  }

  async create(ctx: RequestContext, input: ImageInput): Promise<Image> {
    const ns = requireNamespace(ctx);
    validateImage(input);
    return this.meta.update(async (tx) => {
      if ((await tx.get(imageKey(ns, input.name))) !== undefined) {
        throw new AlreadyExistsError(`image "${input.name}": already exists`);
      }
      await tx.ensureNamespace(ns);
      const now = nowISO();
      const record: ImageRecord = { labels: dropEmptyLabels(input.labels ?? {}), target: targetRecord(input.target), createdAt: now, updatedAt: now };
      tx.putJSON(imageKey(ns, input.name), record);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.ImageCreate, { typeUrl: EventType.create, data: { name: input.name, labels: record.labels } }),
      );
      return toImage(input.name, record);
    });
  }

  async update(ctx: RequestContext, input: ImageInput, paths: readonly string[]): Promise<Image> {
    const ns = requireNamespace(ctx);
    if (!input.name) throw new InvalidArgumentError('image name must not be empty');
    return this.meta.update(async (tx) => {
      const current = await tx.getJSON<ImageRecord>(imageKey(ns, input.name));
      if (!current) throw new NotFoundError(`image "${input.name}": not found`);
      const next: ImageRecord = { ...current, updatedAt: nowISO() };
      if (paths.length === 0) {
        next.labels = dropEmptyLabels(input.labels ?? {});
        next.target = targetRecord(input.target);
      } else {
        const labelPaths = paths.filter((p) => p === 'labels' || p.startsWith('labels.'));
        if (labelPaths.length > 0) next.labels = applyLabelPaths(current.labels, input.labels ?? {}, labelPaths);
        for (const path of paths) {
          if (path === 'labels' || path.startsWith('labels.')) continue;
          if (path === 'target') next.target = targetRecord(input.target);
          else if (path === 'annotations' || path === 'target.annotations') {
            next.target = { ...next.target, annotations: { ...(input.target?.annotations ?? {}) } };
          } else if (path.startsWith('annotations.')) {
            // One annotation, as containerd allows; absent from the input means removed.
            const key = path.slice('annotations.'.length);
            const annotations = { ...next.target.annotations };
            const given = input.target?.annotations;
            if (given && Object.hasOwn(given, key)) {
              Object.defineProperty(annotations, key, { value: given[key], enumerable: true, writable: true, configurable: true });
            } else delete annotations[key];
            next.target = { ...next.target, annotations };
          } else throw new InvalidArgumentError(`cannot update ${JSON.stringify(path)} field on image "${input.name}"`);
        }
      }
      validateImage({ name: input.name, labels: next.labels, target: next.target });
      tx.putJSON(imageKey(ns, input.name), next);
      tx.onCommit(() =>
        this.events.publish(ns, Topic.ImageUpdate, { typeUrl: EventType.update, data: { name: input.name, labels: next.labels } }),
      );
      return toImage(input.name, next);
    });
  }

  async delete(ctx: RequestContext, name: string, opts: { sync?: boolean; target?: Descriptor } = {}): Promise<void> {
    const ns = requireNamespace(ctx);
    if (!name) throw new InvalidArgumentError('image name must not be empty');
    await this.meta.update(async (tx) => {
      const current = await tx.getJSON<ImageRecord>(imageKey(ns, name));
      if (!current) throw new NotFoundError(`image "${name}": not found`);
      if (opts.target?.digest && opts.target.digest !== current.target.digest) {
        throw new FailedPreconditionError(`image "${name}" has target ${current.target.digest}, not ${opts.target.digest}`);
      }
      tx.del(imageKey(ns, name));
      tx.onCommit(() => this.events.publish(ns, Topic.ImageDelete, { typeUrl: EventType.delete, data: { name } }));
    });
    if (opts.sync) await this.gc?.collect();
    else this.gc?.schedule();
  }
}

function validateImage(image: ImageInput): void {
  if (!image.name) throw new InvalidArgumentError('image name must not be empty');
  validateLabels('image.labels', image.labels ?? {});
  if (!image.target) throw new InvalidArgumentError('image.target must be set');
  if (!image.target.mediaType) throw new InvalidArgumentError('image.target.mediaType must be set');
  validateDigest('image.target.digest', image.target.digest);
  if (!(image.target.size > 0)) throw new InvalidArgumentError('image.target.size must be greater than zero');
}

function targetRecord(target: Descriptor | undefined): ImageRecord['target'] {
  return {
    mediaType: target?.mediaType ?? '',
    digest: target?.digest ?? '',
    size: target?.size ?? 0,
    annotations: { ...(target?.annotations ?? {}) },
  };
}

function toImage(name: string, r: ImageRecord): Image {
  return { name, labels: r.labels, target: r.target, createdAt: new Date(r.createdAt), updatedAt: new Date(r.updatedAt) };
}

function imageAdaptor(image: Image): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'name':
        return image.name;
      case 'labels':
        return labelAdaptor(image.labels, path);
      case 'target':
        if (path[1] === 'digest') return image.target.digest;
        if (path[1] === 'mediatype') return image.target.mediaType;
        return undefined;
      default:
        return undefined;
    }
  };
}
