import {
  FailedPreconditionError,
  type FieldAdaptor,
  type Filter,
  type MetaKey,
  NotFoundError,
  type ReadTx,
  type RequestContext,
  type WriteTx,
} from '@berth/plugin-api';
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

/**
 * The records under `prefix` that `filter` matches, in key order: `item`
 * turns a key and value into what is listed (undefined skips the entry),
 * `adaptor` gives the filter its fields.
 */
export async function listMatching<T>(
  tx: ReadTx,
  prefix: MetaKey,
  filter: Filter,
  item: (key: MetaKey, value: Uint8Array) => T | undefined,
  adaptor: (item: T) => FieldAdaptor,
): Promise<T[]> {
  const out: T[] = [];
  for await (const [key, value] of tx.range(prefix)) {
    const it = item(key, value);
    if (it !== undefined && filter.match(adaptor(it))) out.push(it);
  }
  return out;
}
