import { definePlugin, errorMessage, PluginType, SkipPlugin, Snapshotter } from '@berth/plugin-api';
import { OverlaySnapshotter } from './overlay-snapshotter.js';
import { overlayUnsupportedReason } from './overlay-support.js';

export { DEFAULT_LINK_BASE, LowerdirLinks } from './lowerdir-links.js';
export { MOUNT_DATA_MAX, MOUNT_DATA_SHORTEN, OverlaySnapshotter, type OverlaySnapshotterOptions } from './overlay-snapshotter.js';
export { overlayUnsupportedReason } from './overlay-support.js';

/** containerd's `io.containerd.snapshotter.v1.overlayfs`; skipped where overlayfs cannot mount on the root. */
export const overlayPlugin = definePlugin({
  type: PluginType.Snapshotter,
  id: 'overlayfs',
  provides: Snapshotter,
  config: {
    defaults: {
      /** containerd's root_path: another directory for the snapshots. */
      root_path: '',
      /** Directory for short lowerdir links ('' picks one under /run/berth-ovl); see LowerdirLinks. */
      link_dir: '',
      /** false: no links, so chains too long for one mount(2) page fail when prepared. */
      short_lowerdirs: true,
    },
  },
  async init(ctx) {
    const root = ctx.config.root_path || ctx.root;
    const reason = await overlayUnsupportedReason(root);
    if (reason) throw new SkipPlugin(reason);
    const snapshotter = await OverlaySnapshotter.open(root, {
      linkDir: ctx.config.short_lowerdirs ? ctx.config.link_dir || undefined : '',
      onError: (message, err) => ctx.log.warn(message, { error: errorMessage(err) }),
    });
    ctx.export('root', root);
    ctx.onClose(() => snapshotter.close());
    return snapshotter;
  },
});

export default overlayPlugin;
