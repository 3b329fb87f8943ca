import type { Mount, RequestContext, SnapshotInfo, SnapshotKind, SnapshotsService } from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

const KIND: Record<SnapshotKind, number> = { view: 1, active: 2, committed: 3 };

const mountsToWire = (mounts: readonly Mount[]) =>
  mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] }));

const infoToWire = (i: SnapshotInfo) => ({
  name: i.name,
  parent: i.parent ?? '',
  kind: KIND[i.kind],
  createdAt: toTimestamp(i.createdAt),
  updatedAt: toTimestamp(i.updatedAt),
  labels: { ...i.labels },
});

/** containerd.services.snapshots.v1.Snapshots → SnapshotsService. */
export function snapshotsHandlers(svc: SnapshotsService) {
  return {
    prepare: async (req: Req, ctx: RequestContext) => ({
      mounts: mountsToWire(await svc.prepare(ctx, req.snapshotter, req.key, req.parent ?? '', req.labels ?? {})),
    }),
    view: async (req: Req, ctx: RequestContext) => ({
      mounts: mountsToWire(await svc.view(ctx, req.snapshotter, req.key, req.parent ?? '', req.labels ?? {})),
    }),
    mounts: async (req: Req, ctx: RequestContext) => ({ mounts: mountsToWire(await svc.mounts(ctx, req.snapshotter, req.key)) }),
    commit: async (req: Req, ctx: RequestContext) => {
      await svc.commit(ctx, req.snapshotter, req.name, req.key, req.labels ?? {});
      return {};
    },
    remove: async (req: Req, ctx: RequestContext) => {
      await svc.remove(ctx, req.snapshotter, req.key);
      return {};
    },
    stat: async (req: Req, ctx: RequestContext) => ({ info: infoToWire(await svc.stat(ctx, req.snapshotter, req.key)) }),
    update: async (req: Req, ctx: RequestContext) => ({
      info: infoToWire(
        await svc.update(ctx, req.snapshotter, { name: req.info?.name ?? '', labels: req.info?.labels ?? {} }, req.updateMask?.paths ?? []),
      ),
    }),
    list: async function* (req: Req, ctx: RequestContext) {
      const infos = await svc.list(ctx, req.snapshotter, req.filters ?? []);
      // containerd streams pages of up to 100.
      for (let i = 0; i < infos.length; i += 100) yield { info: infos.slice(i, i + 100).map(infoToWire) };
    },
    usage: async (req: Req, ctx: RequestContext) => svc.usage(ctx, req.snapshotter, req.key),
    cleanup: async (req: Req, ctx: RequestContext) => {
      await svc.cleanup(ctx, req.snapshotter);
      return {};
    },
  };
}
