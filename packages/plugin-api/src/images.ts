import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import type { Descriptor } from './snapshots.js';
import { token } from './token.js';

export interface Image {
  readonly name: string;
  readonly labels: Labels;
  readonly target: Descriptor;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type ImageInput = Pick<Image, 'name' | 'target'> & { readonly labels?: Labels };

/** containerd's images store with events (/images/create|update|delete). */
export interface ImagesService {
  get(ctx: RequestContext, name: string): Promise<Image>;
  /** Filter fields: name, target.mediatype, target.digest, labels.<key>. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]>;
  create(ctx: RequestContext, image: ImageInput): Promise<Image>;
  /** Paths: `labels`, `labels.<key>`, `target`, `annotations`… ; none means all. NotFound when missing. */
  update(ctx: RequestContext, image: ImageInput, paths: readonly string[]): Promise<Image>;
  /** With `sync`, returns after garbage collection has removed what only this image held. */
  delete(ctx: RequestContext, name: string, opts?: { sync?: boolean; target?: Descriptor }): Promise<void>;
}
export const ImagesService = token<ImagesService>('ImagesService');
