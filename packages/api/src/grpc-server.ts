import * as grpc from '@grpc/grpc-js';
import {
  errorMessage,
  type GrpcServiceContribution,
  grpcCodeOf,
  InvalidArgumentError,
  type Logger,
  type RequestContext,
} from '@berth/plugin-api';
import type protobuf from 'protobufjs';
import type { Readable } from 'node:stream';
import { requestContext } from './call-context.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { lookupService } from './proto-root.js';

/** ctr sends messages up to 16 MiB; grpc-js accepts 4 MiB unless told. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export type UnaryHandler<Req = any, Res = any> = (req: Req, ctx: RequestContext) => Promise<Res>;
export type ServerStreamHandler<Req = any, Res = any> = (req: Req, ctx: RequestContext) => AsyncIterable<Res>;
export type ClientStreamHandler<Req = any, Res = any> = (reqs: AsyncIterable<Req>, ctx: RequestContext) => Promise<Res>;
export type BidiStreamHandler<Req = any, Res = any> = (
  reqs: AsyncIterable<Req>,
  ctx: RequestContext,
  send: (res: Res) => Promise<void>,
) => Promise<void>;

/** A request that did not decode; the handler wrapper answers InvalidArgument. */
class Malformed {
  constructor(readonly message: string) {}
}

function methodDefinition(method: protobuf.Method): grpc.MethodDefinition<unknown, unknown> {
  const reqType = method.resolvedRequestType as protobuf.Type;
  const resType = method.resolvedResponseType as protobuf.Type;
  return {
    path: `/${method.parent?.fullName.slice(1)}/${method.name}`,
    requestStream: !!method.requestStream,
    responseStream: !!method.responseStream,
    requestSerialize: (v) => encodeMessage(reqType, v as object),
    requestDeserialize: (bytes) => {
      try {
        return decodeMessage(reqType, bytes);
      } catch (err) {
        return new Malformed(`malformed ${reqType.fullName.slice(1)}: ${errorMessage(err)}`);
      }
    },
    responseSerialize: (v) => encodeMessage(resType, v as object),
    responseDeserialize: (bytes) => decodeMessage(resType, bytes),
  };
}

/** A grpc-js service definition for a protobuf service, with berth's codecs. */
export function serviceDefinition(root: protobuf.Root, name: string): grpc.ServiceDefinition {
  const service = lookupService(root, name);
  return Object.fromEntries(service.methodsArray.map((m) => [m.name, methodDefinition(m)]));
}

function toStatus(err: unknown, log: Logger, method: string): Partial<grpc.StatusObject> {
  const code = grpcCodeOf(err) as number as grpc.status;
  if (code === grpc.status.UNKNOWN) log.error('request failed', { method, error: errorMessage(err) });
  return { code, details: errorMessage(err) };
}

function unwrap<T>(req: T | Malformed): T {
  if (req instanceof Malformed) throw new InvalidArgumentError(req.message);
  return req;
}

/**
 * The call's messages. A handler that stops reading early (an error, or
 * done after COMMIT) must not destroy the call: that would drop the status
 * the client is waiting for.
 */
async function* requests<T>(call: Readable): AsyncIterable<T> {
  for await (const req of call.iterator({ destroyOnReturn: false }) as AsyncIterable<T | Malformed>) yield unwrap(req);
}

/**
 * Bind a contributed service: every method of the protobuf service must have
 * a handler; handlers get decoded requests and a RequestContext and throw
 * berth errors, which become gRPC statuses here and nowhere else.
 */
export function bindService(
  server: grpc.Server,
  root: protobuf.Root,
  contribution: GrpcServiceContribution,
  log: Logger,
): void {
  const service = lookupService(root, contribution.service);
  const impl = contribution.implementation as Record<string, unknown>;
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of service.methodsArray) {
    const fn = impl[lowerFirst(method.name)] ?? impl[method.name];
    if (typeof fn !== 'function') {
      throw new Error(`gRPC service ${contribution.service}: no handler for ${method.name}`);
    }
    const handler = (fn as (...args: unknown[]) => unknown).bind(impl);
    const name = `${contribution.service}/${method.name}`;
    handlers[method.name] = wrapHandler(method, handler, log, name);
  }
  server.addService(serviceDefinition(root, contribution.service), handlers);
}

type Call = { metadata: grpc.Metadata; on(event: 'cancelled', listener: () => void): unknown };

/** Aborted when the client cancels or goes away. */
function abortOnCancel(call: Call): AbortController {
  const abort = new AbortController();
  call.on('cancelled', () => abort.abort());
  return abort;
}

/** Throws InvalidArgument for a bad namespace header; call inside the handler's try. */
function contextOf(call: Call, signal: AbortSignal): RequestContext {
  return requestContext((k) => {
    const v = call.metadata.get(k)[0];
    return v === undefined ? undefined : String(v);
  }, signal);
}

function wrapHandler(
  method: protobuf.Method,
  handler: (...args: unknown[]) => unknown,
  log: Logger,
  name: string,
): grpc.UntypedHandleCall {
  if (!method.requestStream && !method.responseStream) {
    return (async (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      try {
        const ctx = contextOf(call, abortOnCancel(call).signal);
        callback(null, await (handler as UnaryHandler)(unwrap(call.request), ctx));
      } catch (err) {
        callback(toStatus(err, log, name) as grpc.ServiceError);
      }
    }) as grpc.handleUnaryCall<unknown, unknown>;
  }
  if (!method.requestStream && method.responseStream) {
    return (async (call: grpc.ServerWritableStream<unknown, unknown>) => {
      const abort = abortOnCancel(call);
      try {
        const ctx = contextOf(call, abort.signal);
        for await (const res of (handler as ServerStreamHandler)(unwrap(call.request), ctx)) {
          if (abort.signal.aborted) break;
          if (!call.write(res)) await waitDrain(call, abort.signal);
        }
        if (!abort.signal.aborted) call.end();
      } catch (err) {
        if (!abort.signal.aborted) call.emit('error', toStatus(err, log, name));
      }
    }) as grpc.handleServerStreamingCall<unknown, unknown>;
  }
  if (method.requestStream && !method.responseStream) {
    return (async (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      try {
        const ctx = contextOf(call, abortOnCancel(call).signal);
        callback(null, await (handler as ClientStreamHandler)(requests(call), ctx));
      } catch (err) {
        callback(toStatus(err, log, name) as grpc.ServiceError);
      }
    }) as grpc.handleClientStreamingCall<unknown, unknown>;
  }
  return (async (call: grpc.ServerDuplexStream<unknown, unknown>) => {
    const abort = abortOnCancel(call);
    const send = async (res: unknown) => {
      if (!call.write(res)) await waitDrain(call, abort.signal);
    };
    try {
      const ctx = contextOf(call, abort.signal);
      await (handler as BidiStreamHandler)(requests(call), ctx, send);
      if (!abort.signal.aborted) call.end();
    } catch (err) {
      if (!abort.signal.aborted) call.emit('error', toStatus(err, log, name));
    }
  }) as grpc.handleBidiStreamingCall<unknown, unknown>;
}

function waitDrain(call: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.once('drain', done);
    signal.addEventListener('abort', done);
  });
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
