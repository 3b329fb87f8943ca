import type { RequestContext } from './context.js';
import { token } from './token.js';

export type Labels = Readonly<Record<string, string>>;

export interface Namespace {
  readonly name: string;
  readonly labels: Labels;
}

/** containerd's namespaces service: validation, storage and events. */
export interface NamespacesService {
  /** An unknown name answers with empty labels, as containerd does. */
  get(ctx: RequestContext, name: string): Promise<Namespace>;
  list(ctx: RequestContext): Promise<Namespace[]>;
  create(ctx: RequestContext, ns: Namespace): Promise<Namespace>;
  /** `paths`: `labels` or `labels.<key>`; empty means replace all labels. */
  update(ctx: RequestContext, ns: Namespace, paths: readonly string[]): Promise<Namespace>;
  /** FailedPrecondition while the namespace still holds resources. */
  delete(ctx: RequestContext, name: string): Promise<void>;
}
export const NamespacesService = token<NamespacesService>('NamespacesService');
