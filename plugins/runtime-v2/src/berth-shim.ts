import { createHash } from 'node:crypto';

/**
 * berth's shim (containerd-shim-berth-v1) serves a group of containers from
 * one process listening on a socket berthd can compute. The rule is the
 * shim's (plugins/shim/src/socket-address.ts), restated here because berthd
 * drives shims through their protocol only; a test checks both agree.
 */

export const BERTH_SHIM_SOCKET_DIR = '/run/berth/s';

/** Annotations that put containers in one shim, in the order the stock runc v2 shim checks them. */
export const GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'] as const;

/** The group a spec asks for: the first grouping annotation, else '' (the namespace's default group). */
export function groupOfSpec(spec: unknown): string {
  const annotations = (spec as { annotations?: Record<string, unknown> } | null)?.annotations;
  if (!annotations || typeof annotations !== 'object') return '';
  for (const key of GROUP_ANNOTATIONS) {
    const value = annotations[key];
    if (typeof value === 'string' && value !== '') return value;
  }
  return '';
}

/** `<dir>/<hex sha256("berth-shim\0" + grpc address + "\0" + namespace + "\0" + group)>`. */
export function berthShimSocket(grpcAddress: string, namespace: string, group: string, dir = BERTH_SHIM_SOCKET_DIR): string {
  const digest = createHash('sha256').update(`berth-shim\0${grpcAddress}\0${namespace}\0${group}`).digest('hex');
  return `${dir}/${digest}`;
}
