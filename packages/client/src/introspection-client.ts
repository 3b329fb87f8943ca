import type { ServiceClient } from '@berth/api';
import type { Platform, PluginInfo, PluginStatus, ServerInfo } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';

/** containerd.services.introspection.v1.Plugin as decoded. */
export interface WirePlugin {
  type?: string;
  id?: string;
  requires?: string[];
  platforms?: { os?: string; architecture?: string; variant?: string }[];
  exports?: Record<string, string>;
  capabilities?: string[];
  initErr?: { code?: number; message?: string } | null;
}

// containerd marks a skipped plugin only by these words in its init error.
const SKIP = /skip plugin/;

function statusOf(initErr: WirePlugin['initErr']): PluginStatus {
  if (!initErr) return { state: 'ok' };
  const message: string = initErr.message ?? '';
  if (SKIP.test(message)) {
    // berth says "skip plugin: <reason>", containerd "<reason>: skip plugin".
    const reason = message.replace(/^skip plugin:\s*/, '').replace(/:?\s*skip plugin$/, '');
    return { state: 'skipped', reason: reason || message };
  }
  return { state: 'error', message };
}

function platformOf(p: NonNullable<WirePlugin['platforms']>[number]): Platform {
  return { os: p.os ?? '', architecture: p.architecture ?? '', ...(p.variant ? { variant: p.variant } : {}) };
}

/** A wire `Plugin` message as plugin-api's PluginInfo. */
export function pluginFromWire(p: WirePlugin): PluginInfo {
  return {
    type: p.type ?? '',
    id: p.id ?? '',
    requires: p.requires ?? [],
    platforms: (p.platforms ?? []).map(platformOf),
    exports: p.exports ?? {},
    capabilities: p.capabilities ?? [],
    status: statusOf(p.initErr),
  };
}

/** containerd.services.introspection.v1.Introspection. */
export class IntrospectionClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.introspection.v1.Introspection');
  }

  /** Plugins matching any of the filters (containerd filter syntax); none means all. */
  async plugins(filters: readonly string[] = [], opts?: RequestOptions): Promise<PluginInfo[]> {
    const res = await this.svc.unary<{ plugins?: WirePlugin[] }>('Plugins', { filters: [...filters] }, this.ctx.call(opts));
    return (res.plugins ?? []).map(pluginFromWire);
  }

  async server(opts?: RequestOptions): Promise<ServerInfo> {
    const res = await this.svc.unary<{ uuid?: string; pid?: number; pidns?: number }>('Server', {}, this.ctx.call(opts));
    return { uuid: res.uuid ?? '', pid: Number(res.pid ?? 0), pidns: Number(res.pidns ?? 0) };
  }
}
