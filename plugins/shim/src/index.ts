export { type CgroupRef, parseProcCgroup, readCgroupMetrics, readV1Metrics, readV2Metrics } from './cgroup-metrics.js';
export { type ShimFlags, parseFlags } from './flags.js';
export { DEFAULT_RUNC_OPTIONS, decodeRuncOptions, RUNC_OPTIONS_TYPE, type RuncOptions, runcOptionsFromAny } from './runc-options.js';
export { SHIM_INFO_SERVICE, shimProtoRoot, TASK_SERVICE } from './shim-proto.js';
export {
  DEFAULT_RUNC_ROOT,
  GROUP_ANNOTATIONS,
  groupOfSpec,
  SHIM_SOCKET_DIR,
  type ShimGroup,
  shimLockPath,
  shimSocketPath,
} from './socket-address.js';
export { SHIM_MAIN, type ServeTarget, ShimLauncher, type ShimLauncherOptions, type ShimOrigin, shimSnapshotStatus } from './launcher.js';
export { type StartRequest, startGroupShim } from './start-command.js';
export { reserveShim, shimContainers, socketRefuses } from './ttrpc-probe.js';

/** The shim binary berthd and containerd run (`io.containerd.berth.v1` resolves to it). */
export const SHIM_BINARY = 'containerd-shim-berth-v1';
