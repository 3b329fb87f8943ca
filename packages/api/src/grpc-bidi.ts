import * as grpc from '@grpc/grpc-js';
import { type BerthError, CanceledError, errorFromGrpc, GrpcCode } from '@berth/plugin-api';
import type protobuf from 'protobufjs';
import { LEASE_HEADER, NAMESPACE_HEADER } from './call-context.js';
import { decodeMessage, encodeMessage } from './codec.js';
import type { CallOptions, GrpcConnection } from './grpc-client.js';
import { lookupService, protoRoot } from './proto-root.js';

/** One bidirectional gRPC call, as a writer of requests and an iterable of responses. */
export interface BidiStream<Req, Res> {
  /** Send one request; resolves when grpc-js has taken it (rejects once the call has ended). */
  write(req: Req): Promise<void>;
  /**
   * The responses, in order. A failed call throws a berth error (NotFoundError, …)
   * from the step that reaches its status. Iterate it once: the responses are queued, not replayed.
   */
  readonly responses: AsyncIterable<Res>;
  /** Half-close: no more requests; the server may still answer. */
  end(): void;
  /** Abandon the call: pending and later steps of `responses` throw CanceledError. */
  cancel(): void;
}

/** What a bidi call needs from a connection: its grpc-js channel, protos and address. */
interface ConnectionInternals {
  readonly client: grpc.Client;
  readonly root: protobuf.Root;
  readonly address: string;
}

/**
 * Open a bidirectional stream `service`/`method` on `conn` (e.g. Content.Write),
 * with the namespace and lease headers of `opts`. Protobuf messages are plain
 * objects with camelCase fields, as for ServiceClient's calls.
 */
export function bidiStream<Req extends object = Record<string, unknown>, Res = Record<string, unknown>>(
  conn: GrpcConnection,
  service: string,
  method: string,
  opts: CallOptions = {},
): BidiStream<Req, Res> {
  // GrpcConnection keeps its channel and protos private to this package, which this file is part of.
  const internals = conn as unknown as ConnectionInternals;
  const m = lookupService(internals.root ?? protoRoot(), service).methods[method];
  if (!m) throw new Error(`${service} has no method ${method}`);
  if (!m.requestStream || !m.responseStream) throw new Error(`${service}.${method} is not a bidirectional stream`);
  const reqType = m.resolvedRequestType as protobuf.Type;
  const resType = m.resolvedResponseType as protobuf.Type;

  const md = new grpc.Metadata();
  if (opts.namespace) md.set(NAMESPACE_HEADER, opts.namespace);
  if (opts.lease) md.set(LEASE_HEADER, opts.lease);
  const call = internals.client.makeBidiStreamRequest(
    `/${service}/${m.name}`,
    (v: object) => encodeMessage(reqType, v),
    (b: Buffer) => decodeMessage<Res>(resType, b),
    md,
    opts.timeout ? { deadline: Date.now() + opts.timeout } : {},
  );

  // Responses queue up here until a consumer takes them; the call pauses while too many wait.
  const queue: Res[] = [];
  let failure: BerthError | undefined;
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const toError = (err: grpc.ServiceError): BerthError => {
    // Only a failed connection is about reaching the daemon; "ref locked" is Unavailable too.
    if (err.code === GrpcCode.UNAVAILABLE && /No connection established|connect E[A-Z]+|Connection dropped|Failed to connect/i.test(err.details ?? '')) {
      return errorFromGrpc(err.code, `cannot reach ${internals.address}: ${err.details} (is the daemon running?)`);
    }
    if (err.code === GrpcCode.CANCELLED && opts.signal?.aborted) return new CanceledError('request canceled');
    return errorFromGrpc(err.code, err.details ?? err.message);
  };
  call.on('data', (res: Res) => {
    queue.push(res);
    if (queue.length >= 16) call.pause();
    notify();
  });
  call.on('error', (err: grpc.ServiceError) => {
    failure ??= toError(err);
    ended = true;
    notify();
  });
  call.on('end', () => {
    ended = true;
    notify();
  });
  const onAbort = () => call.cancel();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  call.on('status', () => opts.signal?.removeEventListener('abort', onAbort));

  async function* responses(): AsyncIterable<Res> {
    for (;;) {
      const next = queue.shift();
      if (next !== undefined) {
        if (queue.length < 16) call.resume();
        yield next;
        continue;
      }
      if (failure) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  }

  return {
    write: (req) =>
      new Promise<void>((resolve, reject) => {
        if (ended) {
          reject(failure ?? new CanceledError(`${service}.${method}: the call has ended`));
          return;
        }
        call.write(req, (err?: Error | null) => (err ? reject(failure ?? err) : resolve()));
      }),
    responses: responses(),
    end: () => call.end(),
    cancel: () => {
      failure ??= new CanceledError(`${service}.${method}: canceled`);
      call.cancel();
    },
  };
}
