import { token } from './token.js';

/** Facts about the running daemon, bound by the core before any plugin runs. */
export interface DaemonInfo {
  readonly version: string;
  readonly revision: string;
  readonly root: string;
  readonly state: string;
  /** The gRPC socket path. */
  readonly address: string;
}
export const DaemonInfo = token<DaemonInfo>('DaemonInfo');

/**
 * berthd's descriptor socket, beside its gRPC one: local clients pass open
 * file descriptors over it (SCM_RIGHTS, with a token as the message) for a
 * gRPC call to name by that token, e.g. LocalContent.IngestFile.
 */
export const descriptorAddressOf = (grpcAddress: string): string => `${grpcAddress}.fd`;

/** The descriptors local clients passed to berthd, bound by the daemon before any plugin runs. */
export interface DescriptorInbox {
  /**
   * The descriptor sent with `token`, waiting for it a short while if it has
   * not arrived yet (the client sends it just before its call). The caller
   * owns it from then on and must close it. NotFound when none comes.
   */
  take(token: string, signal?: AbortSignal): Promise<number>;
}
export const DescriptorInbox = token<DescriptorInbox>('DescriptorInbox');
