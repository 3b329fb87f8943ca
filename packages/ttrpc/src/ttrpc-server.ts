import { decodeMessage, encodeMessage, lookupService, NAMESPACE_HEADER, requestContext } from '@berth/api/protocol';
import {
  DeadlineExceededError,
  errorMessage,
  GrpcCode,
  grpcCodeOf,
  InvalidArgumentError,
  type Logger,
  NotImplementedError,
  type RequestContext,
} from '@berth/plugin-api';
import { existsSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type protobuf from 'protobufjs';
import { encodeFrame, type Frame, FrameDecoder, MESSAGE_LENGTH_MAX, MessageType } from './frame-decoder.js';
import { decodeRequest, encodeResponse, type TtrpcRequest, type TtrpcResponse } from './messages.js';

/** The namespace key containerd puts in ttrpc metadata (gRPC's is `containerd-namespace`). */
export const TTRPC_NAMESPACE_KEY = 'containerd-namespace-ttrpc';

/** Node's timers overflow past this many milliseconds (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface TtrpcRequestContext extends RequestContext {
  /** Every metadata entry of the request, by key as sent. */
  readonly metadata: ReadonlyMap<string, readonly string[]>;
}

type TtrpcHandler = (req: unknown, ctx: TtrpcRequestContext) => Promise<unknown>;

interface BoundMethod {
  readonly name: string;
  readonly reqType: protobuf.Type;
  readonly resType: protobuf.Type;
  readonly handler: TtrpcHandler;
}

export interface TtrpcServerOptions {
  readonly log: Logger;
}

/**
 * A ttrpc server for protobuf services. Implementations have the shape that
 * `bindService` serves over gRPC (lowerCamel methods, `(req, ctx) => Promise<res>`,
 * berth errors thrown), so one implementation serves on either transport.
 */
export class TtrpcServer {
  private readonly log: Logger;
  private readonly services = new Map<string, Map<string, BoundMethod>>();
  private readonly connections = new Set<Socket>();
  private server: Server | undefined;
  private socketPath: string | undefined;

  constructor(opts: TtrpcServerOptions) {
    this.log = opts.log;
  }

  /**
   * Every unary method of the service needs a handler. ttrpc 1.1 has no
   * streams, so streaming methods are left out and answer UNIMPLEMENTED.
   */
  register(root: protobuf.Root, serviceName: string, implementation: object): void {
    if (this.services.has(serviceName)) throw new Error(`ttrpc service ${serviceName} is already registered`);
    const impl = implementation as Record<string, unknown>;
    const methods = new Map<string, BoundMethod>();
    for (const method of lookupService(root, serviceName).methodsArray) {
      if (method.requestStream || method.responseStream) continue;
      const fn = impl[lowerFirst(method.name)] ?? impl[method.name];
      if (typeof fn !== 'function') throw new Error(`ttrpc service ${serviceName}: no handler for ${method.name}`);
      methods.set(method.name, {
        name: `${serviceName}/${method.name}`,
        reqType: method.resolvedRequestType as protobuf.Type,
        resType: method.resolvedResponseType as protobuf.Type,
        handler: (fn as TtrpcHandler).bind(impl),
      });
    }
    this.services.set(serviceName, methods);
  }

  /** Serves on a unix socket, mode 0600 from the moment it exists. A stale socket file is replaced. */
  async listen(socketPath: string): Promise<void> {
    if (this.server) throw new Error(`ttrpc server already listening on ${this.socketPath}`);
    // Only a file already there is probed and removed (synchronously: one unlink, no thread-pool
    // round trip on a shim's way to listening).
    if (existsSync(socketPath)) {
      if (await socketAnswers(socketPath)) throw new Error(`cannot listen on ${socketPath}: another server answers there`);
      rmSync(socketPath, { force: true });
    }
    const server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot listen on ${socketPath}: ${err.message}`)));
      // The bind happens inside listen(); restoring the umask right after keeps its reach small.
      const previous = process.umask(0o177);
      try {
        server.listen(socketPath, resolve);
      } finally {
        process.umask(previous);
      }
    });
    server.on('error', (err) => this.log.error('ttrpc server error', { socket: socketPath, error: err.message }));
    this.server = server;
    this.socketPath = socketPath;
  }

  /** Serves one connected socket (a listener's, or one handed over, as shims get theirs). */
  serve(socket: Socket): void {
    this.connections.add(socket);
    const decoder = new FrameDecoder();
    const inFlight = new Set<AbortController>();
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) this.onFrame(socket, frame, inFlight);
    });
    socket.on('error', (err) => this.log.debug('ttrpc connection error', { error: err.message }));
    socket.on('close', () => {
      this.connections.delete(socket);
      for (const abort of inFlight) abort.abort(new Error('ttrpc: connection closed'));
    });
  }

  /** Stops listening and drops every connection, aborting their requests. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.connections) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.socketPath) await rm(this.socketPath, { force: true });
    this.socketPath = undefined;
  }

  private onFrame(socket: Socket, frame: Frame, inFlight: Set<AbortController>): void {
    if (frame.kind === 'oversize') {
      const message = `message length ${frame.length} exceed maximum message size of ${MESSAGE_LENGTH_MAX}`;
      this.send(socket, frame.streamId, failure(GrpcCode.RESOURCE_EXHAUSTED, message));
      return;
    }
    if (frame.type !== MessageType.REQUEST) return; // ttrpc ignores other types for future use
    let req: TtrpcRequest;
    try {
      req = decodeRequest(frame.payload);
    } catch (err) {
      this.send(socket, frame.streamId, failure(GrpcCode.INVALID_ARGUMENT, `unmarshal request error: ${errorMessage(err)}`));
      return;
    }
    if (frame.streamId % 2 !== 1) {
      const message = 'StreamID must be odd for client initiated streams';
      this.send(socket, frame.streamId, failure(GrpcCode.INVALID_ARGUMENT, message));
      return;
    }
    const abort = new AbortController();
    inFlight.add(abort);
    void this.dispatch(req, abort).then((res) => {
      inFlight.delete(abort);
      this.send(socket, frame.streamId, res);
    });
  }

  /** Never rejects: every outcome is a response. */
  private async dispatch(req: TtrpcRequest, abort: AbortController): Promise<TtrpcResponse> {
    try {
      const method = this.services.get(req.service)?.get(req.method);
      if (!method) {
        throw new NotImplementedError(this.services.has(req.service) ? `method ${req.method}` : `service ${req.service}`);
      }
      let decoded: unknown;
      try {
        decoded = decodeMessage(method.reqType, req.payload);
      } catch (err) {
        throw new InvalidArgumentError(`malformed ${method.reqType.fullName.slice(1)}: ${errorMessage(err)}`);
      }
      const ctx = contextOf(req, abort.signal);
      const res = await withDeadline(req.timeoutNano, method.name, abort, () => method.handler(decoded, ctx));
      try {
        return { payload: encodeMessage(method.resType, res as object) };
      } catch (err) {
        return failure(GrpcCode.INTERNAL, `ttrpc: cannot marshal ${method.name} response: ${errorMessage(err)}`);
      }
    } catch (err) {
      const code = grpcCodeOf(err);
      if (code === GrpcCode.UNKNOWN) {
        this.log.error('ttrpc request failed', { method: `${req.service}/${req.method}`, error: errorMessage(err) });
      }
      return failure(code, errorMessage(err));
    } finally {
      // As ttrpc cancels a request's context once its handler returns.
      if (!abort.signal.aborted) abort.abort(new Error('ttrpc: request finished'));
    }
  }

  private send(socket: Socket, streamId: number, res: TtrpcResponse): void {
    if (socket.destroyed) return;
    let message = encodeResponse(res);
    if (message.length > MESSAGE_LENGTH_MAX) {
      const why = `response length ${message.length} exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`;
      message = encodeResponse(failure(GrpcCode.RESOURCE_EXHAUSTED, why));
    }
    socket.write(encodeFrame(streamId, MessageType.RESPONSE, message));
  }
}

function failure(code: number, message: string): TtrpcResponse {
  return { status: { code, message }, payload: new Uint8Array() };
}

/**
 * Runs the handler under the request's timeout_nano: when it runs out, the
 * handler's signal aborts and the answer is DEADLINE_EXCEEDED at once.
 */
async function withDeadline<T>(timeoutNano: number, name: string, abort: AbortController, run: () => Promise<T>): Promise<T> {
  const ms = timeoutNano / 1e6;
  if (timeoutNano === 0 || ms > MAX_TIMER_MS) return run();
  const expired = new DeadlineExceededError(`${name}: deadline of ${ms} ms exceeded`);
  if (ms <= 0) {
    abort.abort(expired);
    throw expired;
  }
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort(expired);
      reject(expired);
    }, ms);
  });
  try {
    return await Promise.race([run(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** containerd's ttrpc key first, then gRPC's; the value is validated as a namespace. */
function contextOf(req: TtrpcRequest, signal: AbortSignal): TtrpcRequestContext {
  const metadata = new Map<string, string[]>();
  for (const { key, value } of req.metadata) metadata.set(key, [...(metadata.get(key) ?? []), value]);
  const ctx = requestContext((key) => {
    const values = key === NAMESPACE_HEADER ? (metadata.get(TTRPC_NAMESPACE_KEY) ?? metadata.get(key)) : metadata.get(key);
    return values?.[0];
  }, signal);
  return { ...ctx, metadata };
}

/** Whether something accepts connections on the socket (a live server we must not unlink). */
export function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
