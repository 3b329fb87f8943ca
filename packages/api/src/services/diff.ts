import type { Descriptor, DiffService, Mount, RequestContext } from '@berth/plugin-api';

type Req = Record<string, any>;

const mountsFromWire = (mounts: Req[] | undefined): Mount[] =>
  (mounts ?? []).map((m) => ({ type: m.type ?? '', source: m.source ?? '', target: m.target ?? '', options: m.options ?? [] }));

const descriptorToWire = (d: Descriptor) => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: d.size,
  annotations: { ...(d.annotations ?? {}) },
});

/** containerd.services.diff.v1.Diff → DiffService. */
export function diffHandlers(svc: DiffService) {
  return {
    apply: async (req: Req, ctx: RequestContext) => ({
      applied: descriptorToWire(
        await svc.apply(
          ctx,
          {
            mediaType: req.diff?.mediaType ?? '',
            digest: req.diff?.digest ?? '',
            size: Number(req.diff?.size ?? 0),
            annotations: req.diff?.annotations ?? {},
          },
          mountsFromWire(req.mounts),
        ),
      ),
    }),
    diff: async (req: Req, ctx: RequestContext) => ({
      diff: descriptorToWire(
        await svc.diff(ctx, mountsFromWire(req.left), mountsFromWire(req.right), {
          mediaType: req.mediaType ?? '',
          ref: req.ref ?? '',
          labels: req.labels ?? {},
        }),
      ),
    }),
  };
}
