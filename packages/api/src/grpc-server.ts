import {
  errorMessage,
  GrpcCode,
  type GrpcServiceContribution,
  grpcCodeOf,
  InvalidArgumentError,
  type Logger,
  type RequestContext,
} from '@berth/plugin-api';
import net from 'node:net';
import type protobuf from 'protobufjs';
import { requestContext } from './call-context.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { encodeStatusMessage, FramingError, frameMessage, MessageDecoder, parseTimeout } from './grpc-framing.js';
import { H2Session, type H2Stream, StreamResetError } from './h2/session.js';
import { lookupService } from './proto-root.js';

/** ctr sends messages up to 16 MiB; grpc-go's and grpc-js's defaults are 4 MiB. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/**
 * HTTP/2 flow-control windows: 4 MiB per stream and 16 MiB per connection,
 * instead of HTTP/2's 64 KiB for both. containerd's clients send content in
 * 1 MiB WRITE messages and wait for each answer; with 64 KiB windows every
 * message needs some sixteen window updates from berthd's event loop, and the
 * five streams of a pull share one 64 KiB connection window, so the sender
 * stalls whenever berthd is busy with another stream. grpc-go's own server
 * grows its windows up to 16 MiB as it measures the link. 3-round A/B on the
 * bench: `ctr content ingest` 256 MiB 1236 → 910 ms, `ctr content fetch` of
 * 137 MB 914 → 715 ms, `ctr images import --no-unpack` 1107 → 1007 ms.
 */
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

export type UnaryHandler<Req = any, Res = any> = (req: Req, ctx: RequestContext) => Promise<Res>;
export type ServerStreamHandler<Req = any, Res = any> = (req: Req, ctx: RequestContext) => AsyncIterable<Res>;
export type ClientStreamHandler<Req = any, Res = any> = (reqs: AsyncIterable<Req>, ctx: RequestContext) => Promise<Res>;
export type BidiStreamHandler<Req = any, Res = any> = (
  reqs: AsyncIterable<Req>,
  ctx: RequestContext,
  send: (res: Res) => Promise<void>,
) => Promise<void>;

/** Runs one call to its end: every path ends in call.finish, exactly once. */
type CallRunner = (call: ServerCall) => Promise<void>;

export interface GrpcServerOptions {
  readonly log: Logger;
  readonly maxMessageBytes?: number;
}

const GRPC_HEADERS: ReadonlyArray<readonly [string, string]> = [
  [':status', '200'],
  ['content-type', 'application/grpc'],
  ['grpc-accept-encoding', 'identity'],
];

/** Streams one connection may have open at once; more are refused (REFUSED_STREAM) until some end. */
const MAX_CONCURRENT_STREAMS = 1000;
/** The largest request header block berthd takes (ctr's are some 300 bytes). */
const MAX_HEADER_LIST_BYTES = 64 * 1024;

/**
 * berthd's gRPC server: gRPC's HTTP/2 protocol on berth's own HTTP/2 server
 * side (`h2/session.ts`), with berth's codecs and handlers (containerd's
 * clients are grpc-go; berth's own are grpc-js). It replaced a grpc-js
 * server, whose per-call machinery (an interceptor chain, metadata objects, a
 * stream object per call) cost 30 % of the main thread's time per unary call
 * (147 → 100 µs in a loop of the same call), and then node:http2, which sent
 * every answer's trailers in a write of their own a turn of the event loop
 * later (see h2/session.ts); a `ctr containers create` makes about 50 calls,
 * each waiting for the last one's status. Compression is not offered
 * (`grpc-accept-encoding: identity`), as ctr never compresses.
 */
export class GrpcServer {
  private readonly methods = new Map<string, CallRunner>();
  private readonly services = new Set<string>();
  private readonly sessions = new Set<H2Session>();
  private readonly net: net.Server;
  readonly maxMessageBytes: number;

  constructor(readonly opts: GrpcServerOptions) {
    this.maxMessageBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    this.net = net.createServer((socket) => {
      const session = new H2Session(socket, {
        streamWindow: STREAM_WINDOW_BYTES,
        connectionWindow: CONNECTION_WINDOW_BYTES,
        maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
        maxHeaderListSize: MAX_HEADER_LIST_BYTES,
        onStream: (stream) => this.dispatch(stream),
        onError: (err) => opts.log.debug('gRPC connection failed', { error: errorMessage(err) }),
      });
      this.sessions.add(session);
      session.onClose(() => this.sessions.delete(session));
    });
  }

  /** Serve `run` at `/<service>/<method>`. */
  register(service: string, method: string, run: CallRunner): void {
    const path = `/${service}/${method}`;
    if (this.methods.has(path)) throw new Error(`gRPC method ${path} is bound twice`);
    this.methods.set(path, run);
    this.services.add(service);
  }

  /** Listen on a unix socket; the caller sets the umask and removes a stale file. */
  listen(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`cannot listen on ${path}: ${err.message}`));
      this.net.once('error', onError);
      this.net.listen(path, () => {
        this.net.off('error', onError);
        resolve();
      });
    });
  }

  /**
   * Stop accepting, let calls in flight end for `graceMs`, then cut what is
   * left (event subscriptions never end on their own).
   */
  close(graceMs = 1000): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        for (const session of this.sessions) session.destroy();
      }, graceMs);
      timer.unref();
      this.net.close(() => {
        clearTimeout(timer);
        resolve();
      });
      for (const session of this.sessions) session.close();
    });
  }

  private dispatch(stream: H2Stream): void {
    if (!(stream.headers['content-type'] ?? '').startsWith('application/grpc')) {
      stream.respond([[':status', '415']], true);
      return;
    }
    const path = stream.headers[':path'] ?? '';
    const call = new ServerCall(stream, this.maxMessageBytes);
    const run = this.methods.get(path);
    if (!run) {
      const service = path.slice(1, path.lastIndexOf('/'));
      call.finish(
        GrpcCode.UNIMPLEMENTED,
        this.services.has(service) ? `unknown method ${path.slice(service.length + 2)} for service ${service}` : `unknown service ${service}`,
      );
      return;
    }
    run(call).catch((err) => {
      this.opts.log.error('gRPC call failed', { method: path, error: errorMessage(err) });
      call.finish(GrpcCode.INTERNAL, errorMessage(err));
    });
  }
}

/**
 * One call on its HTTP/2 stream: the request messages in, the response
 * headers, messages and status out, and its cancellation. The call is
 * cancelled when the stream closes before the status went out (the client
 * reset it or went away) or when the client's deadline passes.
 */
export class ServerCall {
  private finished = false;
  private headersSent = false;
  private controller: AbortController | undefined;
  private deadline: NodeJS.Timeout | undefined;
  /** The client cancelled, went away, or its deadline passed, before the call finished. */
  cancelled = false;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    private readonly stream: H2Stream,
    private readonly maxMessageBytes: number,
  ) {
    this.headers = stream.headers;
    stream.onClose(() => {
      if (!this.finished) this.cancel();
      this.finished = true;
      clearTimeout(this.deadline);
    });
    const timeout = parseTimeout(this.headers['grpc-timeout']);
    if (timeout !== undefined) {
      this.deadline = setTimeout(() => {
        this.finish(GrpcCode.DEADLINE_EXCEEDED, 'deadline exceeded');
        this.cancel();
      }, timeout);
      this.deadline.unref();
    }
  }

  /**
   * Aborts when the call is cancelled. Made on first use: most handlers never
   * look, and an AbortController per call is not free.
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelled) this.controller.abort();
    }
    return this.controller.signal;
  }

  /** The request's DATA as it comes; a client that resets or goes away ends it as Cancelled. */
  private async *chunks(): AsyncGenerator<Buffer> {
    try {
      yield* this.stream.read();
    } catch (err) {
      if (err instanceof StreamResetError) throw new FramingError('the client went away', GrpcCode.CANCELLED);
      throw err;
    }
  }

  /** The single request message of a unary or server-streaming call. */
  async readRequest(): Promise<Buffer> {
    const decoder = new MessageDecoder(this.maxMessageBytes);
    const messages: Buffer[] = [];
    for await (const chunk of this.chunks()) for (const m of decoder.push(chunk)) messages.push(m);
    if (!decoder.idle) throw new FramingError('the request ended inside a message', GrpcCode.INTERNAL);
    if (messages.length !== 1) throw new FramingError(`expected one request message, got ${messages.length}`, GrpcCode.INTERNAL);
    return messages[0] as Buffer;
  }

  /** The request messages of a client-streaming or bidirectional call, as they come (read on demand). */
  async *requests(): AsyncIterable<Buffer> {
    const decoder = new MessageDecoder(this.maxMessageBytes);
    for await (const chunk of this.chunks()) yield* decoder.push(chunk);
    if (!decoder.idle) throw new FramingError('the request ended inside a message', GrpcCode.INTERNAL);
  }

  /** Send one response message; resolves once the stream takes more (or the call is over). */
  async send(message: Uint8Array): Promise<void> {
    if (this.finished) return;
    this.sendHeaders();
    if (this.stream.write(frameMessage(message))) return;
    await this.stream.writable();
  }

  /**
   * End the call with a status, and with `last` as its final message when
   * given: headers, message and trailers leave in one write. Later calls do
   * nothing.
   */
  finish(code: number, message = '', last?: Uint8Array): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.deadline);
    if (this.stream.closed) return;
    const status: Array<[string, string]> = [['grpc-status', String(code)]];
    if (message) status.push(['grpc-message', encodeStatusMessage(message)]);
    if (!this.headersSent && last === undefined) {
      // Trailers-only: one HEADERS frame that ends the stream.
      this.headersSent = true;
      this.stream.respond([...GRPC_HEADERS, ...status], true);
      return;
    }
    this.sendHeaders();
    if (last !== undefined) this.stream.write(frameMessage(last));
    this.stream.end(status);
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(GRPC_HEADERS);
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.controller?.abort();
  }
}

/**
 * The RequestContext a handler gets. `signal` is a getter on the prototype,
 * so the call's AbortController is made only when a handler reads it (most
 * never do). Cheaper than an own getter on each context, which gives every
 * context its own hidden class. A spread copy (`{ ...ctx }`) has no
 * `signal`: pass the context itself on.
 */
class CallContext implements RequestContext {
  declare readonly namespace?: string;
  declare readonly lease?: string;
  readonly #call: ServerCall;

  constructor(headers: RequestContext, call: ServerCall) {
    // Only the headers the call carried, as requestContext gives them.
    Object.assign(this, headers);
    this.#call = call;
  }

  get signal(): AbortSignal {
    return this.#call.signal;
  }
}

/** Throws InvalidArgument for a bad namespace header; call inside the runner's try. */
function contextOf(call: ServerCall): RequestContext {
  return new CallContext(
    requestContext((k) => call.headers[k]),
    call,
  );
}

/**
 * Bind a contributed service: every method of the protobuf service must have
 * a handler; handlers get decoded requests and a RequestContext and throw
 * berth errors, which become gRPC statuses here and nowhere else.
 */
export function bindService(server: GrpcServer, root: protobuf.Root, contribution: GrpcServiceContribution, log: Logger): void {
  const service = lookupService(root, contribution.service);
  const impl = contribution.implementation as Record<string, unknown>;
  const runners = service.methodsArray.map((method) => {
    const fn = impl[lowerFirst(method.name)] ?? impl[method.name];
    if (typeof fn !== 'function') {
      throw new Error(`gRPC service ${contribution.service}: no handler for ${method.name}`);
    }
    const handler = (fn as (...args: unknown[]) => unknown).bind(impl);
    return [method.name, runnerOf(method, handler, log, `${contribution.service}/${method.name}`)] as const;
  });
  for (const [name, run] of runners) server.register(contribution.service, name, run);
}

function runnerOf(method: protobuf.Method, handler: (...args: unknown[]) => unknown, log: Logger, name: string): CallRunner {
  const reqType = method.resolvedRequestType as protobuf.Type;
  const resType = method.resolvedResponseType as protobuf.Type;
  const decode = (bytes: Buffer) => {
    try {
      return decodeMessage(reqType, bytes);
    } catch (err) {
      throw new InvalidArgumentError(`malformed ${reqType.fullName.slice(1)}: ${errorMessage(err)}`);
    }
  };
  const encode = (res: unknown) => encodeMessage(resType, res as object);
  const fail = (call: ServerCall, err: unknown) => {
    const { code, message } = toStatus(err, log, name);
    call.finish(code, message);
  };
  async function* requests(call: ServerCall): AsyncIterable<unknown> {
    for await (const bytes of call.requests()) yield decode(bytes);
  }

  if (!method.requestStream && !method.responseStream) {
    return async (call) => {
      try {
        const ctx = contextOf(call);
        const res = await (handler as UnaryHandler)(decode(await call.readRequest()), ctx);
        call.finish(GrpcCode.OK, '', encode(res));
      } catch (err) {
        fail(call, err);
      }
    };
  }
  if (!method.requestStream && method.responseStream) {
    return async (call) => {
      try {
        const ctx = contextOf(call);
        for await (const res of (handler as ServerStreamHandler)(decode(await call.readRequest()), ctx)) {
          if (call.cancelled) break;
          await call.send(encode(res));
        }
        call.finish(GrpcCode.OK);
      } catch (err) {
        fail(call, err);
      }
    };
  }
  if (method.requestStream && !method.responseStream) {
    return async (call) => {
      try {
        const ctx = contextOf(call);
        const res = await (handler as ClientStreamHandler)(requests(call), ctx);
        call.finish(GrpcCode.OK, '', encode(res));
      } catch (err) {
        fail(call, err);
      }
    };
  }
  return async (call) => {
    try {
      const ctx = contextOf(call);
      await (handler as BidiStreamHandler)(requests(call), ctx, (res) => call.send(encode(res)));
      call.finish(GrpcCode.OK);
    } catch (err) {
      fail(call, err);
    }
  };
}

function toStatus(err: unknown, log: Logger, method: string): { code: number; message: string } {
  if (err instanceof FramingError) return { code: err.code, message: err.message };
  const code = grpcCodeOf(err) as number;
  if (code === GrpcCode.UNKNOWN) log.error('request failed', { method, error: errorMessage(err) });
  return { code, message: errorMessage(err) };
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);
