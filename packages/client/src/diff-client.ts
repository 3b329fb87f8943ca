import type { ServiceClient } from '@berth/api';
import type { Descriptor, Labels, Mount } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';
import { descriptorFromWire, descriptorToWire, type WireDescriptor } from './images-client.js';
import { mountsToWire } from './snapshots-client.js';

export interface DiffOptions extends RequestOptions {
  /** `application/vnd.oci.image.layer.v1.tar` or `…tar+gzip` (the daemon's default). */
  readonly mediaType?: string;
  /** The content ingest ref to write through. */
  readonly ref?: string;
  /** Labels on the written content. */
  readonly labels?: Labels;
}

/** containerd.services.diff.v1.Diff. */
export class DiffClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.diff.v1.Diff');
  }

  /**
   * Apply the layer `layer` (in the content store) onto `mounts`. Returns the
   * uncompressed layer's descriptor: its digest is the layer's diff ID.
   */
  async apply(layer: Descriptor, mounts: readonly Mount[], opts?: RequestOptions): Promise<Descriptor> {
    const res = await this.svc.unary<{ applied?: WireDescriptor }>(
      'Apply',
      { diff: descriptorToWire(layer), mounts: mountsToWire(mounts) },
      this.ctx.stream(opts),
    );
    return descriptorFromWire(res.applied);
  }

  /** Write the changes from `lower` to `upper` into content as a layer; its descriptor. */
  async diff(lower: readonly Mount[], upper: readonly Mount[], opts: DiffOptions = {}): Promise<Descriptor> {
    const res = await this.svc.unary<{ diff?: WireDescriptor }>(
      'Diff',
      {
        left: mountsToWire(lower),
        right: mountsToWire(upper),
        mediaType: opts.mediaType ?? '',
        ref: opts.ref ?? '',
        labels: { ...opts.labels },
      },
      this.ctx.stream(opts),
    );
    return descriptorFromWire(res.diff);
  }
}
