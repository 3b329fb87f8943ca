export { type DaemonConfig, DEFAULT_ROOT, DEFAULT_STATE, type Flags, loadConfig, parseConfig } from './config.js';
export { BERTH_VERSION, BUILTIN_PLUGIN_PACKAGES, type RunningDaemon, startDaemon } from './daemon.js';
export { RootLock, RootLockedError } from './root-lock.js';
export { BERTHD_NODE_FLAGS } from './node-flags.js';
