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
