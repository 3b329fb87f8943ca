import { GrpcCode, type Introspection, NotFoundError, type PluginInfo } from '@berth/plugin-api';

type Req = Record<string, any>;

function toWire(p: PluginInfo) {
  const { status } = p;
  return {
    type: p.type,
    id: p.id,
    requires: [...p.requires],
    platforms: p.platforms.map((pl) => ({ os: pl.os, architecture: pl.architecture, variant: pl.variant ?? '' })),
    exports: { ...p.exports },
    capabilities: [...p.capabilities],
    // ctr prints "skip" only when the message contains "skip plugin".
    initErr:
      status.state === 'ok'
        ? null
        : {
            code: GrpcCode.UNKNOWN,
            message: status.state === 'skipped' ? `skip plugin: ${status.reason}` : status.message,
          },
  };
}

/** containerd.services.introspection.v1.Introspection → Introspection. */
export function introspectionHandlers(intro: Introspection) {
  return {
    plugins: async (req: Req) => ({ plugins: intro.plugins(req.filters ?? []).map(toWire) }),
    server: async () => intro.server(),
    pluginInfo: async (req: Req) => {
      const found = intro.plugins([]).find((p) => p.type === req.type && p.id === req.id);
      if (!found) throw new NotFoundError(`plugin ${req.type}.${req.id}: not found`);
      return { plugin: toWire(found), extra: null };
    },
  };
}
