// Everything: the protocol (protos, codecs, request context), the server half and the gRPC
// clients. Processes that serve and never call over gRPC (berthd, shims) import /protocol and
// /server instead, which do not load @grpc/grpc-js.
export * from './protocol.js';
export * from './server.js';
export { type CallOptions, GrpcConnection, grpcTarget, ServiceClient } from './grpc-client.js';
export { type BidiStream, bidiStream } from './grpc-bidi.js';
