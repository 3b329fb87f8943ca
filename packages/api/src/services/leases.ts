import type { Lease, LeasesService, RequestContext } from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

const leaseToWire = (l: Lease) => ({ id: l.id, createdAt: toTimestamp(l.createdAt), labels: { ...l.labels } });
const resource = (r: Req | null | undefined) => ({ id: r?.id ?? '', type: r?.type ?? '' });

/** containerd.services.leases.v1.Leases → LeasesService. */
export function leasesHandlers(svc: LeasesService) {
  return {
    create: async (req: Req, ctx: RequestContext) => ({
      lease: leaseToWire(await svc.create(ctx, { id: req.id ?? '', labels: req.labels ?? {} })),
    }),
    delete: async (req: Req, ctx: RequestContext) => {
      await svc.delete(ctx, req.id, { sync: !!req.sync });
      return {};
    },
    list: async (req: Req, ctx: RequestContext) => ({ leases: (await svc.list(ctx, req.filters ?? [])).map(leaseToWire) }),
    addResource: async (req: Req, ctx: RequestContext) => {
      await svc.addResource(ctx, req.id, resource(req.resource));
      return {};
    },
    deleteResource: async (req: Req, ctx: RequestContext) => {
      await svc.deleteResource(ctx, req.id, resource(req.resource));
      return {};
    },
    listResources: async (req: Req, ctx: RequestContext) => ({ resources: await svc.listResources(ctx, req.id) }),
  };
}
