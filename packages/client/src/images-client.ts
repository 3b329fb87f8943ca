import { fromTimestamp, type ServiceClient, type Timestamp } from '@berth/api';
import type { Descriptor, Image, ImageInput } from '@berth/plugin-api';
import type { Readable, Writable } from 'node:stream';
import type { ClientContext, RequestOptions } from './client-context.js';
import { ContentClient } from './content-client.js';
import { LeasesClient } from './leases-client.js';
import { type ExportOptions, exportArchive } from './oci/archive-exporter.js';
import { type ImportOptions, importArchive } from './oci/archive-importer.js';
import { imagePlatforms, imageSize } from './oci/image-walk.js';
import { hostPlatform, type OciPlatform, Platforms, parsePlatform } from './oci/platforms.js';

/** containerd.types.Descriptor as decoded. */
export interface WireDescriptor {
  mediaType?: string;
  digest?: string;
  size?: number;
  annotations?: Record<string, string>;
}
interface WireImage {
  name?: string;
  labels?: Record<string, string>;
  target?: WireDescriptor | null;
  createdAt?: Timestamp | null;
  updatedAt?: Timestamp | null;
}

export function descriptorFromWire(d: WireDescriptor | null | undefined): Descriptor {
  const annotations = d?.annotations ?? {};
  return {
    mediaType: d?.mediaType ?? '',
    digest: d?.digest ?? '',
    size: Number(d?.size ?? 0),
    ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
}

export function descriptorToWire(d: Descriptor): WireDescriptor {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: { ...d.annotations } };
}

const imageFromWire = (i: WireImage | null | undefined): Image => ({
  name: i?.name ?? '',
  labels: i?.labels ?? {},
  target: descriptorFromWire(i?.target),
  createdAt: fromTimestamp(i?.createdAt),
  updatedAt: fromTimestamp(i?.updatedAt),
});

const imageToWire = (i: ImageInput) => ({ name: i.name, labels: { ...i.labels }, target: descriptorToWire(i.target) });

/**
 * containerd.services.images.v1.Images, plus import and export of image
 * archives (OCI layout and `docker save` tarballs) through the content store.
 */
export class ImagesClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.images.v1.Images');
  }

  /** NotFoundError when absent. */
  async get(name: string, opts?: RequestOptions): Promise<Image> {
    const res = await this.svc.unary<{ image?: WireImage }>('Get', { name }, this.ctx.call(opts));
    return imageFromWire(res.image);
  }

  /** Images matching any of the filters (`name==…`, `target.digest==…`, `labels."k"==v`); none means all. */
  async list(filters: readonly string[] = [], opts?: RequestOptions): Promise<Image[]> {
    const res = await this.svc.unary<{ images?: WireImage[] }>('List', { filters: [...filters] }, this.ctx.call(opts));
    return (res.images ?? []).map(imageFromWire);
  }

  /** AlreadyExistsError when the name is taken. */
  async create(image: ImageInput, opts?: RequestOptions): Promise<Image> {
    const res = await this.svc.unary<{ image?: WireImage }>('Create', { image: imageToWire(image) }, this.ctx.call(opts));
    return imageFromWire(res.image);
  }

  /**
   * Update fields named by `paths` (`target`, `labels`, `labels.<key>`,
   * `annotations…`); none means every field. NotFoundError when absent.
   */
  async update(image: ImageInput, paths: readonly string[] = [], opts?: RequestOptions): Promise<Image> {
    const res = await this.svc.unary<{ image?: WireImage }>(
      'Update',
      { image: imageToWire(image), updateMask: { paths: [...paths] } },
      this.ctx.call(opts),
    );
    return imageFromWire(res.image);
  }

  /** Point `image.name` at `image.target`, creating it when absent (what containerd's import does). */
  async put(image: ImageInput, opts?: RequestOptions): Promise<Image> {
    try {
      return await this.update(image, ['target'], opts);
    } catch (err) {
      if ((err as { kind?: string }).kind !== 'not-found') throw err;
      return this.create(image, opts);
    }
  }

  /**
   * With `sync`, returns once garbage collection has removed what only this
   * image held. With `target`, deletes only while the image still points there
   * (FailedPreconditionError otherwise).
   */
  async delete(name: string, opts: RequestOptions & { readonly sync?: boolean; readonly target?: Descriptor } = {}): Promise<void> {
    await this.svc.unary(
      'Delete',
      { name, sync: !!opts.sync, ...(opts.target ? { target: descriptorToWire(opts.target) } : {}) },
      this.ctx.call(opts),
    );
  }

  /**
   * Bytes the image takes for one platform (default: this host's and what it
   * runs, as `ctr images ls`): index, manifest, config and layers.
   * NotFoundError when some of that content is not here.
   */
  size(target: Descriptor, opts: RequestOptions & { readonly platform?: string } = {}): Promise<number> {
    const matcher = opts.platform ? Platforms.strict(parsePlatform(opts.platform)) : Platforms.only(hostPlatform());
    return imageSize(new ContentClient(this.ctx), target, matcher, opts);
  }

  /** The platforms the image offers (from its index, or its config). */
  platforms(target: Descriptor, opts?: RequestOptions): Promise<OciPlatform[]> {
    return imagePlatforms(new ContentClient(this.ctx), target, opts);
  }

  /**
   * Import an OCI image layout or `docker save` tarball (a path, or a stream
   * read once, start to end) and return the images created or updated. The
   * archive's blobs are ingested under a lease and the images made only when
   * everything checked out; a refused archive (InvalidArgumentError) leaves
   * nothing behind.
   */
  importArchive(source: string | Readable | AsyncIterable<Uint8Array>, opts: ImportOptions = {}): Promise<Image[]> {
    return importArchive(
      { content: new ContentClient(this.ctx), images: this, leases: new LeasesClient(this.ctx), context: this.ctx },
      source,
      opts,
    );
  }

  /** Write the named images to `out` as an OCI layout tarball (see ExportOptions for the formats). */
  exportArchive(names: readonly string[], out: Writable, opts: ExportOptions = {}): Promise<void> {
    return exportArchive({ content: new ContentClient(this.ctx), images: this }, names, out, opts);
  }
}
