import type { Descriptor, Image, ImageInput, ImagesService, RequestContext } from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

const descriptorFromWire = (d: Req | null | undefined): Descriptor => ({
  mediaType: d?.mediaType ?? '',
  digest: d?.digest ?? '',
  size: Number(d?.size ?? 0),
  annotations: d?.annotations ?? {},
});

const imageFromWire = (i: Req | null | undefined): ImageInput => ({
  name: i?.name ?? '',
  labels: i?.labels ?? {},
  target: descriptorFromWire(i?.target),
});

const imageToWire = (i: Image) => ({
  name: i.name,
  labels: { ...i.labels },
  target: { mediaType: i.target.mediaType, digest: i.target.digest, size: i.target.size, annotations: { ...i.target.annotations } },
  createdAt: toTimestamp(i.createdAt),
  updatedAt: toTimestamp(i.updatedAt),
});

/** containerd.services.images.v1.Images → ImagesService. */
export function imagesHandlers(svc: ImagesService) {
  return {
    get: async (req: Req, ctx: RequestContext) => ({ image: imageToWire(await svc.get(ctx, req.name)) }),
    list: async (req: Req, ctx: RequestContext) => ({ images: (await svc.list(ctx, req.filters ?? [])).map(imageToWire) }),
    create: async (req: Req, ctx: RequestContext) => ({ image: imageToWire(await svc.create(ctx, imageFromWire(req.image))) }),
    update: async (req: Req, ctx: RequestContext) => ({
      image: imageToWire(await svc.update(ctx, imageFromWire(req.image), req.updateMask?.paths ?? [])),
    }),
    delete: async (req: Req, ctx: RequestContext) => {
      await svc.delete(ctx, req.name, { sync: !!req.sync, ...(req.target ? { target: descriptorFromWire(req.target) } : {}) });
      return {};
    },
  };
}
