import {
  type ContentService,
  type Descriptor,
  type Differ,
  type DiffService,
  InvalidArgumentError,
  isAlreadyExists,
  type Labels,
  type Mount,
  type RequestContext,
  validateDigest,
} from '@berth/plugin-api';
import { randomBytes } from 'node:crypto';
import { requireNamespace } from './request.js';

const LayerMediaType = {
  tar: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** The label containerd puts on a compressed layer naming its uncompressed digest. */
export const UNCOMPRESSED_LABEL = 'containerd.io/uncompressed';

/** containerd's diff service: layers come from and go to the caller's namespace's content. */
export class DiffServiceImpl implements DiffService {
  constructor(
    private readonly differ: Differ,
    private readonly content: ContentService,
  ) {}

  async apply(ctx: RequestContext, layer: Descriptor, mounts: readonly Mount[]): Promise<Descriptor> {
    requireNamespace(ctx);
    validateDigest('diff.digest', layer.digest);
    if (mounts.length === 0) throw new InvalidArgumentError('mounts must not be empty');
    // NotFound here, before any byte is written, when the layer is not in this namespace.
    await this.content.info(ctx, layer.digest);
    const applied = await this.differ.apply(
      { ...layer, open: () => streamOf(this.content.read(ctx, layer.digest)) },
      mounts,
      ctx.signal,
    );
    return { mediaType: LayerMediaType.tar, digest: applied.diffId, size: applied.size };
  }

  async diff(
    ctx: RequestContext,
    lower: readonly Mount[],
    upper: readonly Mount[],
    opts: { mediaType?: string; ref?: string; labels?: Labels },
  ): Promise<Descriptor> {
    requireNamespace(ctx);
    const mediaType = opts.mediaType || LayerMediaType.gzip;
    if (mediaType !== LayerMediaType.tar && mediaType !== LayerMediaType.gzip) {
      throw new InvalidArgumentError(`unsupported diff media type ${mediaType}`);
    }
    const ingest = await this.content.writer(ctx, { ref: opts.ref || `diff-${randomBytes(8).toString('hex')}` });
    try {
      const produced = await this.differ.compare(lower, upper, { mediaType, write: (chunk) => ingest.write(chunk) }, ctx.signal);
      const size = ingest.offset;
      const labels = { ...(opts.labels ?? {}), [UNCOMPRESSED_LABEL]: produced.diffId };
      let digest: string;
      try {
        digest = await ingest.commit(size, '', labels);
      } catch (err) {
        // The same layer is already in this namespace: that is the answer, and
        // it gets the diff ID label if it lacks one, as containerd's differ does.
        if (!isAlreadyExists(err)) throw err;
        digest = ingest.digest();
        const existing = await this.content.info(ctx, digest);
        if (!existing.labels[UNCOMPRESSED_LABEL]) {
          await this.content.update(ctx, { digest, labels: { [UNCOMPRESSED_LABEL]: produced.diffId } }, [`labels.${UNCOMPRESSED_LABEL}`]);
        }
      }
      return { mediaType, digest, size };
    } finally {
      await ingest.close();
    }
  }
}

async function* streamOf(source: Promise<AsyncIterable<Uint8Array>>): AsyncIterable<Uint8Array> {
  yield* await source;
}
