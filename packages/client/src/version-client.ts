import type { ServiceClient } from '@berth/api';
import type { ClientContext, RequestOptions } from './client-context.js';

export interface VersionInfo {
  readonly version: string;
  readonly revision: string;
}

/** containerd.services.version.v1.Version. */
export class VersionClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.version.v1.Version');
  }

  async version(opts?: RequestOptions): Promise<VersionInfo> {
    const res = await this.svc.unary<{ version?: string; revision?: string }>('Version', {}, this.ctx.call(opts));
    return { version: res.version ?? '', revision: res.revision ?? '' };
  }
}
