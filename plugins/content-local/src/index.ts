import { ContentStore, definePlugin, PluginType } from '@berth/plugin-api';
import { LocalContentStore } from './local-content-store.js';

export { type DigestAlgorithm, type ParsedDigest, parseDigest } from './digest.js';
export { LocalContentStore } from './local-content-store.js';

/** containerd's `io.containerd.content.v1.content`: blobs under `<root>/io.containerd.content.v1.content`. */
export const contentPlugin = definePlugin({
  type: PluginType.Content,
  id: 'content',
  provides: ContentStore,
  async init(ctx) {
    const store = await LocalContentStore.open(ctx.root);
    ctx.export('root', ctx.root);
    return store;
  },
});

export default contentPlugin;
