import { type RequestContext, validateIdentifier } from '@berth/plugin-api';

/** gRPC metadata keys containerd clients send. */
export const NAMESPACE_HEADER = 'containerd-namespace';
export const LEASE_HEADER = 'containerd-lease';

/**
 * The request context from a call's metadata. A namespace header that is
 * not a valid identifier is refused (InvalidArgument) before any service runs.
 */
export function requestContext(get: (key: string) => string | undefined, signal?: AbortSignal): RequestContext {
  const namespace = get(NAMESPACE_HEADER);
  if (namespace !== undefined) validateIdentifier('namespace', namespace);
  const lease = get(LEASE_HEADER);
  return {
    ...(namespace !== undefined ? { namespace } : {}),
    ...(lease ? { lease } : {}),
    ...(signal ? { signal } : {}),
  };
}
