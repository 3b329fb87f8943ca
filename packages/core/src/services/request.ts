import { FailedPreconditionError, NotFoundError, type RequestContext, type WriteTx } from '@berth/plugin-api';
import { leaseKey, leaseResourceKey } from '../metadata/keys.js';

/** The caller's namespace; containerd answers FailedPrecondition "namespace is required" without one. */
export function requireNamespace(ctx: RequestContext): string {
  if (!ctx.namespace) throw new FailedPreconditionError('namespace is required');
  return ctx.namespace;
}

/**
 * Record that the caller's lease (the `containerd-lease` header) holds a
 * resource, so garbage collection keeps it while the lease lives.
 */
export async function joinLease(tx: WriteTx, ctx: RequestContext, ns: string, type: string, id: string): Promise<void> {
  if (!ctx.lease) return;
  if ((await tx.get(leaseKey(ns, ctx.lease))) === undefined) {
    throw new NotFoundError(`lease "${ctx.lease}": not found`);
  }
  tx.put(leaseResourceKey(ns, ctx.lease, type, id), new Uint8Array());
}

export const nowISO = () => new Date().toISOString();
