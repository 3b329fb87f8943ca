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

/**
 * A call's cancellation: `signal` aborts when the client cancels or goes away
 * while the handler runs.
 *
 * Both halves are kept off the per-RPC path. grpc-js emits 'cancelled' when
 * *every* call's stream closes, answered or not, so `finish()` (called once
 * the handler is done) stops a finished call from aborting: that would create
 * an AbortError DOMException and dispatch an abort event per request for
 * nothing. And the AbortController is made on first use of `signal`, since
 * most handlers never look at it.
 */
class Cancellation {
  private controller: AbortController | undefined;
  private state: 'running' | 'cancelled' | 'finished' = 'running';

  constructor(call: Call) {
    call.on('cancelled', () => {
      if (this.state !== 'running') return;
      this.state = 'cancelled';
      this.controller?.abort();
    });
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.state === 'cancelled') this.controller.abort();
    }
    return this.controller.signal;
  }

  /** The client cancelled (or went away) before the handler finished. */
  get cancelled(): boolean {
    return this.state === 'cancelled';
  }

  finish(): void {
    if (this.state === 'running') this.state = 'finished';
  }
}

/**
 * The RequestContext a gRPC handler gets. `signal` is a getter on the
 * prototype, so the call's AbortController is made only when a handler reads
 * it (most never do). Cheaper than an own getter on each context, which gives
 * every context its own hidden class. A spread copy (`{ ...ctx }`) has no
 * `signal`: pass the context itself on.
 */
class CallContext implements RequestContext {
  declare readonly namespace?: string;
  declare readonly lease?: string;
  readonly #cancel: Cancellation;

  constructor(headers: RequestContext, cancel: Cancellation) {
    // Only the headers the call carried, as requestContext gives them.
    Object.assign(this, headers);
    this.#cancel = cancel;
  }

  get signal(): AbortSignal {
    return this.#cancel.signal;
  }
}

/** Throws InvalidArgument for a bad namespace header; call inside the handler's try. */
function contextOf(call: Call, cancel: Cancellation): RequestContext {
  const headers = requestContext((k) => {
    const v = call.metadata.get(k)[0];
    return v === undefined ? undefined : String(v);
  });
  return new CallContext(headers, cancel);
}

function wrapHandler(
  method: protobuf.Method,
  handler: (...args: unknown[]) => unknown,
  log: Logger,
  name: string,
): grpc.UntypedHandleCall {
  if (!method.requestStream && !method.responseStream) {
    return (async (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const cancel = new Cancellation(call);
      try {
        const ctx = contextOf(call, cancel);
        const res = await (handler as UnaryHandler)(unwrap(call.request), ctx);
        cancel.finish();
        callback(null, res);
      } catch (err) {
        cancel.finish();
        callback(toStatus(err, log, name) as grpc.ServiceError);
      }
    }) as grpc.handleUnaryCall<unknown, unknown>;
  }
  if (!method.requestStream && method.responseStream) {
    return (async (call: grpc.ServerWritableStream<unknown, unknown>) => {
      const cancel = new Cancellation(call);
      try {
        const ctx = contextOf(call, cancel);
        for await (const res of (handler as ServerStreamHandler)(unwrap(call.request), ctx)) {
          if (cancel.cancelled) break;
          if (!call.write(res)) await waitDrain(call, cancel.signal);
        }
        cancel.finish();
        if (!cancel.cancelled) call.end();
      } catch (err) {
        cancel.finish();
        if (!cancel.cancelled) call.emit('error', toStatus(err, log, name));
      }
    }) as grpc.handleServerStreamingCall<unknown, unknown>;
  }
  if (method.requestStream && !method.responseStream) {
    return (async (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const cancel = new Cancellation(call);
      try {
        const ctx = contextOf(call, cancel);
        const res = await (handler as ClientStreamHandler)(requests(call), ctx);
        cancel.finish();
        callback(null, res);
      } catch (err) {
        cancel.finish();
        callback(toStatus(err, log, name) as grpc.ServiceError);
      }
    }) as grpc.handleClientStreamingCall<unknown, unknown>;
  }
  return (async (call: grpc.ServerDuplexStream<unknown, unknown>) => {
    const cancel = new Cancellation(call);
    const send = async (res: unknown) => {
      if (!call.write(res)) await waitDrain(call, cancel.signal);
    };
    try {
      const ctx = contextOf(call, cancel);
      await (handler as BidiStreamHandler)(requests(call), ctx, send);
      cancel.finish();
      if (!cancel.cancelled) call.end();
    } catch (err) {
      cancel.finish();
      if (!cancel.cancelled) call.emit('error', toStatus(err, log, name));
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
