import type { ServiceClient } from '@berth/api';
import type { ClientContext, RequestOptions } from './client-context.js';

export type HealthStatus = 'unknown' | 'serving' | 'not-serving' | 'service-unknown';

// grpc.health.v1.HealthCheckResponse.ServingStatus, by number.
const STATUS: readonly HealthStatus[] = ['unknown', 'serving', 'not-serving', 'service-unknown'];

/** grpc.health.v1.Health. */
export class HealthClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('grpc.health.v1.Health');
  }

  /** The daemon's status, or one service's when `service` is given. */
  async check(service = '', opts?: RequestOptions): Promise<HealthStatus> {
    const res = await this.svc.unary<{ status?: number }>('Check', { service }, this.ctx.call(opts));
    return STATUS[res.status ?? 0] ?? 'unknown';
  }
}
