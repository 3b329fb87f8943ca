export {
  encodeFrame,
  FRAME_HEADER_LENGTH,
  type Frame,
  FrameDecoder,
  type FrameHeader,
  MESSAGE_LENGTH_MAX,
  MessageType,
} from './frame-decoder.js';
export {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type KeyValue,
  type TtrpcRequest,
  type TtrpcResponse,
  type TtrpcStatus,
} from './messages.js';
export { TtrpcClient, type TtrpcCallOptions, type TtrpcServiceClient, ttrpcService, ttrpcSocketPath } from './ttrpc-client.js';
export {
  socketAnswers,
  TTRPC_NAMESPACE_KEY,
  type TtrpcRequestContext,
  TtrpcServer,
  type TtrpcServerOptions,
} from './ttrpc-server.js';
