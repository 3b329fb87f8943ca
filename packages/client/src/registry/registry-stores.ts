import { isNotFound } from '@berth/plugin-api';
import type { BerthClient } from '../berth-client.js';
import { ClientContext } from '../client-context.js';
import { ContentClient } from '../content-client.js';
import { ImagesClient } from '../images-client.js';
import { contextLease, LeasedClientContext, LeasesClient } from '../leases-client.js';
import type { RegistryStores } from './ports.js';

/** The daemon's content, images and leases services, as pull and push use them. */
export function registryStores(ctx: ClientContext): RegistryStores {
  const content = new ContentClient(ctx);
  const images = new ImagesClient(ctx);
  const leases = new LeasesClient(ctx);
  return {
    content: {
      info: (digest) => content.info(digest),
      update: async (digest, labels, paths) => {
        await content.update(digest, labels, paths);
      },
      read: (digest, offset) => content.read(digest, offset ? { offset } : {}),
      writer: (ref, opts) => content.openWriter(ref, opts),
      abort: async (ref) => {
        try {
          await content.abort(ref);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
      },
    },
    images: {
      get: (name) => images.get(name),
      create: (image) => images.create(image),
      update: (image, paths) => images.update(image, paths),
    },
    leases: {
      create: async (labels) => (await leases.create({ labels })).id,
      delete: (id, opts) => leases.delete(id, { sync: !!opts?.sync }),
    },
    ...(contextLease(ctx) ? { lease: contextLease(ctx) } : {}),
    withLease: (lease) => registryStores(new LeasedClientContext(ctx, lease)),
  };
}

/** A BerthClient (its connection and namespace), a bare context, or stores made by hand. */
export type RegistryTarget = BerthClient | ClientContext | RegistryStores;

export function storesOf(target: RegistryTarget): RegistryStores {
  if (target instanceof ClientContext) return registryStores(target);
  if ('context' in target && target.context instanceof ClientContext) return registryStores(target.context);
  return target as RegistryStores;
}
