import { protoRoot } from '@berth/api/protocol';
import { EventCodec, eventsHandlers } from '@berth/api/server';
import type { EventExchange, Logger } from '@berth/plugin-api';
import { TtrpcServer } from '@berth/ttrpc';

export const TTRPC_EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

/**
 * berthd's ttrpc socket (`<grpc address>.ttrpc`, mode 0600): the Events
 * service that shims publish task events to (their TTRPC_ADDRESS). Envelopes
 * are forwarded into the exchange as they come, namespace and timestamp kept.
 */
export async function startTtrpcServer(socketPath: string, exchange: EventExchange, log: Logger): Promise<TtrpcServer> {
  const server = new TtrpcServer({ log: log.child({ server: 'ttrpc' }) });
  const { forward } = eventsHandlers(exchange, new EventCodec(protoRoot()));
  server.register(protoRoot(), TTRPC_EVENTS_SERVICE, { forward });
  await server.listen(socketPath);
  return server;
}
