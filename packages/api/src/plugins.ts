import {
  DaemonInfo,
  definePlugin,
  EventExchange,
  GrpcService,
  type GrpcServiceContribution,
  Introspection,
  NamespacesService,
  PluginType,
} from '@berth/plugin-api';
import { protoRoot } from './proto-root.js';
import { EventCodec, eventsHandlers } from './services/events.js';
import { healthHandlers } from './services/health.js';
import { introspectionHandlers } from './services/introspection.js';
import { namespacesHandlers } from './services/namespaces.js';
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

export default [versionGrpc, namespacesGrpc, introspectionGrpc, eventsGrpc, healthGrpc];
