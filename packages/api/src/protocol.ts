/**
 * The protocol half of @berth/api without gRPC: proto loading, message
 * codecs and request context. Shims and ttrpc import this entry so they do not
 * load @grpc/grpc-js (about 10–15 MiB and 100 ms per process).
 */
export { LEASE_HEADER, NAMESPACE_HEADER, requestContext } from './call-context.js';
export { decodeMessage, encodeMessage, fromTimestamp, type Timestamp, toTimestamp } from './codec.js';
export { loadProtoRoot, lookupService, PROTO_DIR, protoRoot } from './proto-root.js';
