import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import { token } from './token.js';

/** A protobuf Any carried as is (spec, runtime options, extensions). */
export interface AnyValue {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

export interface Container {
  readonly id: string;
  readonly labels: Labels;
  readonly image: string;
  readonly runtime: { readonly name: string; readonly options?: AnyValue };
  /** The OCI runtime spec: `types.containerd.io/opencontainers/runtime-spec/1/Spec`, JSON bytes. */
  readonly spec?: AnyValue;
  readonly snapshotter: string;
  readonly snapshotKey: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly extensions: Readonly<Record<string, AnyValue>>;
  readonly sandbox: string;
}

export type ContainerInput = Omit<Container, 'createdAt' | 'updatedAt' | 'labels' | 'extensions' | 'sandbox' | 'image' | 'snapshotter' | 'snapshotKey'> &
  Partial<Pick<Container, 'labels' | 'extensions' | 'sandbox' | 'image' | 'snapshotter' | 'snapshotKey'>>;

/** containerd's containers store with events (/containers/create|update|delete); a GC root for its snapshot. */
export interface ContainersService {
  get(ctx: RequestContext, id: string): Promise<Container>;
  /** Filter fields: id, image, runtime.name, snapshotter, labels.<key>. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Container[]>;
  create(ctx: RequestContext, container: ContainerInput): Promise<Container>;
  /** Paths: labels, labels.<key>, spec, image, snapshotkey, extensions, extensions.<key>; none: all mutable fields. */
  update(ctx: RequestContext, container: ContainerInput, paths: readonly string[]): Promise<Container>;
  delete(ctx: RequestContext, id: string): Promise<void>;
}
export const ContainersService = token<ContainersService>('ContainersService');
