import { definePlugin, errorMessage, PluginType, Snapshotter } from '@berth/plugin-api';
import { NativeSnapshotter } from './native-snapshotter.js';

export { copyTree } from './copy-tree.js';
export { NativeSnapshotter, type NativeSnapshotterOptions } from './native-snapshotter.js';

/** containerd's `io.containerd.snapshotter.v1.native`: full copies, on any filesystem. */
export const nativePlugin = definePlugin({
  type: PluginType.Snapshotter,
  id: 'native',
  provides: Snapshotter,
  config: {
    defaults: {
      /** containerd's root_path: another directory for the snapshots. */
      root_path: '',
    },
  },
  async init(ctx) {
    const root = ctx.config.root_path || ctx.root;
    const snapshotter = await NativeSnapshotter.open(root, {
      onError: (message, err) => ctx.log.warn(message, { error: errorMessage(err) }),
    });
    ctx.export('root', root);
    ctx.onClose(() => snapshotter.close());
    return snapshotter;
  },
});

export default nativePlugin;
