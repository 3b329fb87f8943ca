/**
 * The server half of @berth/api without gRPC clients: berthd's gRPC server,
 * the service binder and the Events handlers. berthd imports this entry and
 * `@berth/api/protocol` rather than the package's main entry, whose clients
 * load @grpc/grpc-js (some seventy files, heap and start-up time berthd never
 * uses since it serves gRPC over its own HTTP/2 server side, h2/session.ts).
 */
export {
  type BidiStreamHandler,
  bindService,
  type ClientStreamHandler,
  CONNECTION_WINDOW_BYTES,
  GrpcServer,
  type GrpcServerOptions,
  MAX_MESSAGE_BYTES,
  type ServerStreamHandler,
  STREAM_WINDOW_BYTES,
  type UnaryHandler,
} from './grpc-server.js';
export { EventCodec, eventsHandlers } from './services/events.js';
