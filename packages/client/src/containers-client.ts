import { fromTimestamp, type ServiceClient, type Timestamp } from '@berth/api';
import type { AnyValue, Container, ContainerInput, Labels } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';
import { type RuntimeSpec, specFromAny } from './spec/runtime-spec.js';

/** google.protobuf.Any as protobufjs decodes it (its bundled type keeps snake_case). */
interface WireAny {
  type_url?: string;
  value?: Uint8Array;
}
interface WireContainer {
  id?: string;
  labels?: Record<string, string>;
  image?: string;
  runtime?: { name?: string; options?: WireAny | null } | null;
  spec?: WireAny | null;
  snapshotter?: string;
  snapshotKey?: string;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
  extensions?: Record<string, WireAny>;
  sandbox?: string;
}

export const anyFromWire = (a: WireAny | null | undefined): AnyValue | undefined =>
  a?.type_url ? { typeUrl: a.type_url, value: a.value ?? new Uint8Array() } : undefined;
export const anyToWire = (a: AnyValue | undefined): WireAny | null => (a ? { type_url: a.typeUrl, value: a.value } : null);

function containerFromWire(c: WireContainer | null | undefined): Container {
  const options = anyFromWire(c?.runtime?.options);
  const spec = anyFromWire(c?.spec);
  return {
    id: c?.id ?? '',
    labels: c?.labels ?? {},
    image: c?.image ?? '',
    runtime: { name: c?.runtime?.name ?? '', ...(options ? { options } : {}) },
    ...(spec ? { spec } : {}),
    snapshotter: c?.snapshotter ?? '',
    snapshotKey: c?.snapshotKey ?? '',
    createdAt: fromTimestamp(c?.createdAt),
    updatedAt: fromTimestamp(c?.updatedAt),
    extensions: Object.fromEntries(
      Object.entries(c?.extensions ?? {}).flatMap(([k, v]) => {
        const a = anyFromWire(v);
        return a ? [[k, a]] : [];
      }),
    ),
    sandbox: c?.sandbox ?? '',
  };
}

const containerToWire = (c: ContainerInput): WireContainer => ({
  id: c.id,
  labels: { ...c.labels },
  image: c.image ?? '',
  runtime: { name: c.runtime.name, options: anyToWire(c.runtime.options) },
  spec: anyToWire(c.spec),
  snapshotter: c.snapshotter ?? '',
  snapshotKey: c.snapshotKey ?? '',
  extensions: Object.fromEntries(Object.entries(c.extensions ?? {}).map(([k, v]) => [k, { type_url: v.typeUrl, value: v.value }])),
  sandbox: c.sandbox ?? '',
});

/** The OCI spec a container carries (InvalidArgumentError when it has none, or not JSON). */
export function containerSpec(container: Pick<Container, 'spec'>): RuntimeSpec {
  return specFromAny(container.spec);
}

/**
 * containerd.services.containers.v1.Containers: container records (id,
 * image, runtime, spec, snapshot, labels). A record runs nothing; its task
 * does (see TasksClient).
 */
export class ContainersClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.containers.v1.Containers');
  }

  /** NotFoundError when absent. */
  async get(id: string, opts?: RequestOptions): Promise<Container> {
    const res = await this.svc.unary<{ container?: WireContainer }>('Get', { id }, this.ctx.call(opts));
    return containerFromWire(res.container);
  }

  /** Containers matching any filter (`id==…`, `image==…`, `runtime.name==…`, `labels.k==v`); none means all. */
  async list(filters: readonly string[] = [], opts?: RequestOptions): Promise<Container[]> {
    const res = await this.svc.unary<{ containers?: WireContainer[] }>('List', { filters: [...filters] }, this.ctx.call(opts));
    return (res.containers ?? []).map(containerFromWire);
  }

  /** AlreadyExistsError for a taken id; InvalidArgumentError without a spec or runtime. */
  async create(container: ContainerInput, opts?: RequestOptions): Promise<Container> {
    const res = await this.svc.unary<{ container?: WireContainer }>(
      'Create',
      { container: containerToWire(container) },
      this.ctx.call(opts),
    );
    return containerFromWire(res.container);
  }

  /**
   * Update the fields named by `paths` (`labels`, `labels.<key>`, `spec`,
   * `image`, `snapshotkey`, `extensions`, `extensions.<key>`); none means
   * every mutable field. NotFoundError when absent.
   */
  async update(container: ContainerInput, paths: readonly string[] = [], opts?: RequestOptions): Promise<Container> {
    const res = await this.svc.unary<{ container?: WireContainer }>(
      'Update',
      { container: containerToWire(container), updateMask: { paths: [...paths] } },
      this.ctx.call(opts),
    );
    return containerFromWire(res.container);
  }

  /**
   * Set each label (an empty value removes it), keep the others, and return
   * all the labels the container has afterwards (containerd's SetLabels).
   */
  async label(id: string, labels: Labels, opts?: RequestOptions): Promise<Labels> {
    const keys = Object.keys(labels);
    if (keys.length === 0) return (await this.get(id, opts)).labels;
    const updated = await this.update(
      { id, runtime: { name: '' }, labels },
      keys.map((k) => `labels.${k}`),
      opts,
    );
    return updated.labels;
  }

  /** NotFoundError when absent. The task, if any, must be deleted first; the snapshot stays (see deleteContainer). */
  async delete(id: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Delete', { id }, this.ctx.call(opts));
  }
}
