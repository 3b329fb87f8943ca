import type { AnyValue, Container, ContainerInput, ContainersService, RequestContext } from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

/** protobufjs's bundled Any keeps snake_case `type_url`. */
const anyFromWire = (a: Req | null | undefined): AnyValue | undefined =>
  a?.type_url ? { typeUrl: a.type_url, value: a.value ?? new Uint8Array() } : undefined;
const anyToWire = (a: AnyValue | undefined) => (a ? { type_url: a.typeUrl, value: a.value } : null);

function containerFromWire(c: Req | null | undefined): ContainerInput {
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
    extensions: Object.fromEntries(
      Object.entries((c?.extensions ?? {}) as Record<string, Req>).flatMap(([k, v]) => {
        const a = anyFromWire(v);
        return a ? [[k, a]] : [];
      }),
    ),
    sandbox: c?.sandbox ?? '',
  };
}

const containerToWire = (c: Container) => ({
  id: c.id,
  labels: { ...c.labels },
  image: c.image,
  runtime: { name: c.runtime.name, options: anyToWire(c.runtime.options) },
  spec: anyToWire(c.spec),
  snapshotter: c.snapshotter,
  snapshotKey: c.snapshotKey,
  createdAt: toTimestamp(c.createdAt),
  updatedAt: toTimestamp(c.updatedAt),
  extensions: Object.fromEntries(Object.entries(c.extensions).map(([k, v]) => [k, anyToWire(v)])),
  sandbox: c.sandbox,
});

/** containerd.services.containers.v1.Containers → ContainersService. */
export function containersHandlers(svc: ContainersService) {
  return {
    get: async (req: Req, ctx: RequestContext) => ({ container: containerToWire(await svc.get(ctx, req.id)) }),
    list: async (req: Req, ctx: RequestContext) => ({
      containers: (await svc.list(ctx, req.filters ?? [])).map(containerToWire),
    }),
    listStream: async function* (req: Req, ctx: RequestContext) {
      for (const c of await svc.list(ctx, req.filters ?? [])) yield { container: containerToWire(c) };
    },
    create: async (req: Req, ctx: RequestContext) => ({
      container: containerToWire(await svc.create(ctx, containerFromWire(req.container))),
    }),
    update: async (req: Req, ctx: RequestContext) => ({
      container: containerToWire(await svc.update(ctx, containerFromWire(req.container), req.updateMask?.paths ?? [])),
    }),
    delete: async (req: Req, ctx: RequestContext) => {
      await svc.delete(ctx, req.id);
      return {};
    },
  };
}
