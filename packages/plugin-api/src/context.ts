/**
 * What a service call knows about its caller, taken from the request's
 * metadata (`containerd-namespace`, `containerd-lease`) by the adapter.
 */
export interface RequestContext {
  readonly namespace?: string;
  readonly lease?: string;
  readonly signal?: AbortSignal;
}
