import { createHash } from 'node:crypto';

/** Where berth's shims put their ttrpc sockets: short, so `s/<64 hex>` stays far below sun_path's 108 bytes. */
export const SHIM_SOCKET_DIR = '/run/berth/s';

/** runc's default state root; the namespace is appended, as the stock shim does under /run/containerd/runc. */
export const DEFAULT_RUNC_ROOT = '/run/berth/runc';

/**
 * Annotations that put containers in one shim, in the order the stock
 * runc v2 shim checks them.
 */
export const GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'] as const;

export interface ShimGroup {
  /** The daemon's gRPC address (`-address`): shims of two daemons never mix. */
  readonly address: string;
  readonly namespace: string;
  /** The grouping annotation's value; '' is the namespace's default group. */
  readonly group: string;
}

/** The group a bundle's OCI spec (config.json) asks for: the first grouping annotation, else '' (per namespace). */
export function groupOfSpec(spec: unknown): string {
  const annotations = (spec as { annotations?: Record<string, unknown> } | null)?.annotations;
  if (!annotations || typeof annotations !== 'object') return '';
  for (const key of GROUP_ANNOTATIONS) {
    const value = annotations[key];
    if (typeof value === 'string' && value !== '') return value;
  }
  return '';
}

/**
 * The socket of the shim that serves a group:
 * `/run/berth/s/<hex sha256("berth-shim\0" + address + "\0" + namespace + "\0" + group)>`.
 * berthd computes the same path to find a running group shim without `start`.
 */
export function shimSocketPath(g: ShimGroup, dir = SHIM_SOCKET_DIR): string {
  const digest = createHash('sha256').update(`berth-shim\0${g.address}\0${g.namespace}\0${g.group}`).digest('hex');
  return `${dir}/${digest}`;
}

/** The lock that `start` and a shim deciding to exit take, so neither sees the other half-way. */
export const shimLockPath = (socketPath: string): string => `${socketPath}.lock`;
