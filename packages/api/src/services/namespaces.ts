import type { Namespace, NamespacesService, RequestContext } from '@berth/plugin-api';

type Req = Record<string, any>;
const toWire = (ns: Namespace) => ({ name: ns.name, labels: { ...ns.labels } });
const fromWire = (ns: Req | null | undefined): Namespace => ({ name: ns?.name ?? '', labels: ns?.labels ?? {} });

/** containerd.services.namespaces.v1.Namespaces → NamespacesService. */
export function namespacesHandlers(svc: NamespacesService) {
  return {
    get: async (req: Req, ctx: RequestContext) => ({ namespace: toWire(await svc.get(ctx, req.name)) }),
    // containerd ignores ListNamespacesRequest.filter; so does berth.
    list: async (_req: Req, ctx: RequestContext) => ({ namespaces: (await svc.list(ctx)).map(toWire) }),
    create: async (req: Req, ctx: RequestContext) => ({ namespace: toWire(await svc.create(ctx, fromWire(req.namespace))) }),
    update: async (req: Req, ctx: RequestContext) => ({
      namespace: toWire(await svc.update(ctx, fromWire(req.namespace), req.updateMask?.paths ?? [])),
    }),
    delete: async (req: Req, ctx: RequestContext) => {
      await svc.delete(ctx, req.name);
      return {};
    },
  };
}
