import type { DaemonInfo } from '@berth/plugin-api';

/** containerd.services.version.v1.Version. */
export function versionHandlers(info: DaemonInfo) {
  return {
    version: async () => ({ version: info.version, revision: info.revision }),
  };
}
