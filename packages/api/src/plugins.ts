import {
  ContainersService,
  ContentService,
  DaemonInfo,
  DescriptorInbox,
  DiffService,
  definePlugin,
  EventExchange,
  GrpcService,
  type GrpcServiceContribution,
  ImagesService,
  Introspection,
  LeasesService,
  NamespacesService,
  PluginType,
  SnapshotsService,
  TasksService,
} from '@berth/plugin-api';
import { protoRoot } from './proto-root.js';
import { containersHandlers } from './services/containers.js';
import { contentHandlers } from './services/content.js';
import { diffHandlers } from './services/diff.js';
import { EventCodec, eventsHandlers } from './services/events.js';
import { healthHandlers } from './services/health.js';
import { imagesHandlers } from './services/images.js';
import { introspectionHandlers } from './services/introspection.js';
import { leasesHandlers } from './services/leases.js';
import { localContentHandlers } from './services/local-content.js';
import { snapshotsHandlers } from './services/snapshots.js';
import { namespacesHandlers } from './services/namespaces.js';
import { tasksHandlers } from './services/tasks.js';
import { versionHandlers } from './services/version.js';

/** containerd's gRPC services, each a thin adapter over a berth service. */

const service = (name: string, implementation: object): GrpcServiceContribution => ({ service: name, implementation });

export const versionGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'version',
  requires: [DaemonInfo],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.version.v1.Version', versionHandlers(ctx.get(DaemonInfo))),
});

export const namespacesGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'namespaces',
  requires: [NamespacesService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.namespaces.v1.Namespaces', namespacesHandlers(ctx.get(NamespacesService))),
});

export const introspectionGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'introspection',
  requires: [Introspection],
  provides: GrpcService,
  init: (ctx) =>
    service('containerd.services.introspection.v1.Introspection', introspectionHandlers(ctx.get(Introspection))),
});

export const eventsGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'events',
  requires: [EventExchange],
  provides: GrpcService,
  init: (ctx) =>
    service('containerd.services.events.v1.Events', eventsHandlers(ctx.get(EventExchange), new EventCodec(protoRoot()))),
});

export const healthGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'healthcheck',
  provides: GrpcService,
  init: () => service('grpc.health.v1.Health', healthHandlers()),
});

export const contentGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'content',
  requires: [ContentService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.content.v1.Content', contentHandlers(ctx.get(ContentService))),
});

/** berth's own: ingest of a file a local client passes by descriptor (proto/berth/services/content/v1/local.proto). */
export const localContentGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'berth-local-content',
  requires: [ContentService, DescriptorInbox],
  provides: GrpcService,
  init: (ctx) =>
    service('berth.services.content.v1.LocalContent', localContentHandlers(ctx.get(ContentService), ctx.get(DescriptorInbox))),
});

export const imagesGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'images',
  requires: [ImagesService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.images.v1.Images', imagesHandlers(ctx.get(ImagesService))),
});

export const leasesGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'leases',
  requires: [LeasesService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.leases.v1.Leases', leasesHandlers(ctx.get(LeasesService))),
});

export const snapshotsGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'snapshots',
  requires: [SnapshotsService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.snapshots.v1.Snapshots', snapshotsHandlers(ctx.get(SnapshotsService))),
});

export const diffGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'diff',
  requires: [DiffService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.diff.v1.Diff', diffHandlers(ctx.get(DiffService))),
});

export const containersGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'containers',
  requires: [ContainersService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.containers.v1.Containers', containersHandlers(ctx.get(ContainersService))),
});

export const tasksGrpc = definePlugin({
  type: PluginType.Grpc,
  id: 'tasks',
  requires: [TasksService],
  provides: GrpcService,
  init: (ctx) => service('containerd.services.tasks.v1.Tasks', tasksHandlers(ctx.get(TasksService))),
});

export default [
  versionGrpc,
  namespacesGrpc,
  introspectionGrpc,
  eventsGrpc,
  healthGrpc,
  contentGrpc,
  localContentGrpc,
  imagesGrpc,
  leasesGrpc,
  snapshotsGrpc,
  diffGrpc,
  containersGrpc,
  tasksGrpc,
];
