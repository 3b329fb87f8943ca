import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Differ, definePlugin, PluginType } from '@berth/plugin-api';
import { WalkingDiffer } from './walking-differ.js';

export { type Compression, compressionOf, decompress, sniffCompression } from './compression.js';
export { cleanEntryName, LayerApplier } from './layer-applier.js';
export { makedev, mknod } from '@berth/sys';
export { DEFAULT_TAR_LIMITS, type TarEntry, type TarEntryType, type TarLimits, TarReader } from './tar-reader.js';
export { encodeHeader, type TarHeader } from './tar-writer.js';
export { WalkingDiffer, type WalkingDifferOptions } from './walking-differ.js';

/** containerd's `io.containerd.differ.v1.walking`. */
export const differPlugin = definePlugin({
  type: PluginType.Differ,
  id: 'walking',
  provides: Differ,
  config: {
    defaults: {
      /** Create device nodes that layers contain (containerd does, as root). */
      allow_devices: true,
      /** compare: read an overlay upperdir directly when its lowerdirs are the lower mounts. */
      overlay_fast_path: true,
    },
  },
  async init(ctx) {
    const tempDir = join(ctx.state, 'tmpmounts');
    await mkdir(tempDir, { recursive: true, mode: 0o700 });
    const differ = new WalkingDiffer({
      allowDevices: ctx.config.allow_devices,
      overlayFastPath: ctx.config.overlay_fast_path,
      tempDir,
      log: ctx.log,
    });
    return differ;
  },
});

export default differPlugin;
