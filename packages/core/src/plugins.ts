import 'reflect-metadata';
import {
  definePlugin,
  EventExchange,
  Introspection,
  MetadataStore,
  NamespacesService,
  PluginRegistryView,
  PluginType,
} from '@berth/plugin-api';
import { join } from 'node:path';
import { EventExchangeImpl } from './event-exchange.js';
import { LevelMetadataStore } from './metadata/level-metadata-store.js';
import { IntrospectionService } from './services/introspection-service.js';
import { NamespacesServiceImpl } from './services/namespaces-service.js';

/** Built-in plugins of the core, loaded as any plugin package is (package.json `berth.plugin`). */

export const exchangePlugin = definePlugin({
  type: PluginType.Event,
  id: 'exchange',
  provides: EventExchange,
  init: () => new EventExchangeImpl(),
});

export const metadataPlugin = definePlugin({
  type: PluginType.Metadata,
  id: 'level',
  provides: MetadataStore,
  async init(ctx) {
    const path = join(ctx.root, 'meta.level');
    const store = await LevelMetadataStore.open(path);
    ctx.export('path', path);
    ctx.onClose(() => store.close());
    return store;
  },
});

export const namespacesServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'namespaces-service',
  requires: [MetadataStore, EventExchange],
  provides: NamespacesService,
  init(ctx) {
    ctx.container.bind(NamespacesServiceImpl).toSelf();
    return ctx.container.get(NamespacesServiceImpl);
  },
});

export const introspectionServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'introspection-service',
  requires: [PluginRegistryView],
  provides: Introspection,
  init: (ctx) => new IntrospectionService(ctx.get(PluginRegistryView), ctx.root),
});

export default [exchangePlugin, metadataPlugin, namespacesServicePlugin, introspectionServicePlugin];
