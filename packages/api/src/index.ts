export { LEASE_HEADER, NAMESPACE_HEADER, requestContext } from './call-context.js';
export { decodeMessage, encodeMessage, fromTimestamp, type Timestamp, toTimestamp } from './codec.js';
export { type CallOptions, GrpcConnection, grpcTarget, ServiceClient } from './grpc-client.js';
export { type BidiStream, bidiStream } from './grpc-bidi.js';
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
export { loadProtoRoot, lookupService, PROTO_DIR, protoRoot } from './proto-root.js';
export { EventCodec, eventsHandlers } from './services/events.js';
