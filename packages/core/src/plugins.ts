import 'reflect-metadata';
import {
  ContainersService,
  ContentService,
  ContentStore,
  Differ,
  DiffService,
  definePlugin,
  errorMessage,
  EventExchange,
  GarbageCollector,
  ImagesService,
  Introspection,
  LeasesService,
  MetadataStore,
  NamespacesService,
  PluginRegistryView,
  PluginType,
  Snapshotter,
  SnapshotsService,
  SpecModifier,
  TaskManager,
  TasksService,
} from '@berth/plugin-api';
import type { Container } from 'inversify';
import { join } from 'node:path';
import { EventExchangeImpl } from './event-exchange.js';
import { MetadataGarbageCollector } from './gc/garbage-collector.js';
import { CONTAINERD_PACING } from './gc/pacer.js';
import { LevelMetadataStore } from './metadata/level-metadata-store.js';
import { ContainersServiceImpl } from './services/containers-service.js';
import { ContentServiceImpl } from './services/content-service.js';
import { DiffServiceImpl } from './services/diff-service.js';
import { ImagesServiceImpl } from './services/images-service.js';
import { IntrospectionService } from './services/introspection-service.js';
import { LeasesServiceImpl } from './services/leases-service.js';
import { SnapshotsServiceImpl } from './services/snapshots-service.js';
import { NamespacesServiceImpl } from './services/namespaces-service.js';
import { orderedModifiers, TasksServiceImpl } from './services/tasks-service.js';

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
    const store = await LevelMetadataStore.open(path, (err) =>
      ctx.log.error('event or hook after a metadata commit failed', { error: errorMessage(err) }),
    );
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
  init: (ctx) => injected(ctx, NamespacesServiceImpl),
});

export const introspectionServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'introspection-service',
  requires: [PluginRegistryView],
  provides: Introspection,
  init: (ctx) => new IntrospectionService(ctx.get(PluginRegistryView), ctx.root),
});

export const gcPlugin = definePlugin({
  type: PluginType.GC,
  id: 'scheduler',
  requires: [MetadataStore],
  optional: [ContentStore, Snapshotter],
  provides: GarbageCollector,
  // containerd's keys and defaults, but for schedule_delay_ms (containerd: 0), which lets the
  // deletions of one client command (a container's, then its lease's) share a collection.
  config: {
    defaults: {
      pause_threshold: CONTAINERD_PACING.pauseThreshold,
      deletion_threshold: CONTAINERD_PACING.deletionThreshold,
      schedule_delay_ms: 100,
      startup_delay_ms: 100,
    },
  },
  init(ctx) {
    const gc = new MetadataGarbageCollector(
      ctx.get(MetadataStore),
      ctx.tryGet(ContentStore),
      ctx.log,
      {
        scheduleDelayMs: ctx.config.schedule_delay_ms,
        pauseThreshold: ctx.config.pause_threshold,
        deletionThreshold: ctx.config.deletion_threshold,
      },
      ctx.getAll(Snapshotter),
    );
    // As containerd: one collection shortly after start, for what a crash left behind.
    const startup = setTimeout(() => gc.schedule(), ctx.config.startup_delay_ms);
    startup.unref();
    // Before the stores close: a collection cut off half-way would fail on a closed snapshotter.
    ctx.onClose(async () => {
      clearTimeout(startup);
      await gc.stop();
    });
    return gc;
  },
});

/** A service plugin whose value is an @injectable class resolved in the plugin's child container. */
// biome-ignore lint/suspicious/noExplicitAny: constructor parameters are resolved by inversify
function injected<T>(ctx: { container: Container }, cls: new (...args: any[]) => T): T {
  ctx.container.bind(cls).toSelf();
  return ctx.container.get<T>(cls);
}

export const contentServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'content-service',
  requires: [ContentStore, MetadataStore, EventExchange],
  optional: [GarbageCollector],
  provides: ContentService,
  init: (ctx) => injected(ctx, ContentServiceImpl),
});

export const imagesServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'images-service',
  requires: [MetadataStore, EventExchange],
  optional: [GarbageCollector],
  provides: ImagesService,
  init: (ctx) => injected(ctx, ImagesServiceImpl),
});

export const leasesServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'leases-service',
  requires: [MetadataStore],
  optional: [GarbageCollector],
  provides: LeasesService,
  init: (ctx) => injected(ctx, LeasesServiceImpl),
});

export const containersServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'containers-service',
  requires: [MetadataStore, EventExchange],
  optional: [GarbageCollector],
  provides: ContainersService,
  init: (ctx) => injected(ctx, ContainersServiceImpl),
});

export const snapshotsServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'snapshots-service',
  requires: [MetadataStore, EventExchange],
  optional: [Snapshotter],
  provides: SnapshotsService,
  init: (ctx) => new SnapshotsServiceImpl(ctx.getAll(Snapshotter), ctx.get(MetadataStore), ctx.get(EventExchange)),
});

export const diffServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'diff-service',
  requires: [Differ, ContentService],
  provides: DiffService,
  init: (ctx) => new DiffServiceImpl(ctx.get(Differ), ctx.get(ContentService)),
});

export const tasksServicePlugin = definePlugin({
  type: PluginType.Service,
  id: 'tasks-service',
  requires: [ContainersService, TaskManager],
  optional: [SnapshotsService, SpecModifier],
  provides: TasksService,
  init: (ctx) =>
    new TasksServiceImpl(
      ctx.get(ContainersService),
      ctx.get(TaskManager),
      orderedModifiers(ctx.getAll(SpecModifier)),
      ctx.tryGet(SnapshotsService),
    ),
});

export default [
  exchangePlugin,
  metadataPlugin,
  gcPlugin,
  namespacesServicePlugin,
  introspectionServicePlugin,
  contentServicePlugin,
  imagesServicePlugin,
  leasesServicePlugin,
  snapshotsServicePlugin,
  diffServicePlugin,
  containersServicePlugin,
  tasksServicePlugin,
];
