import type { RequestContext } from '@berth/plugin-api';

const SERVING = 1;

/** grpc.health.v1.Health: berthd serves as long as it answers. */
export function healthHandlers() {
  return {
    check: async () => ({ status: SERVING }),
    watch: async function* (_req: unknown, ctx: RequestContext) {
      yield { status: SERVING };
      await new Promise<void>((resolve) => ctx.signal?.addEventListener('abort', () => resolve(), { once: true }));
    },
  };
}
