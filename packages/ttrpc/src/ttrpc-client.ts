import { decodeMessage, encodeMessage, lookupService } from '@berth/api/protocol';
import {
  type BerthError,
  CanceledError,
  DeadlineExceededError,
  errorFromGrpc,
  errorMessage,
  GrpcCode,
  UnavailableError,
} from '@berth/plugin-api';
import { createConnection, type Socket } from 'node:net';
import type protobuf from 'protobufjs';
import { encodeFrame, type Frame, FrameDecoder, MESSAGE_LENGTH_MAX, MessageType } from './frame-decoder.js';
import { decodeResponse, encodeRequest, type KeyValue } from './messages.js';
import { TTRPC_NAMESPACE_KEY } from './ttrpc-server.js';

export interface TtrpcCallOptions {
  /** Sent as the request's timeout_nano and enforced here: DeadlineExceededError. 0 or absent: none. */
  readonly timeoutMs?: number;
  /** Request metadata; a key with several values is sent once per value. */
  readonly metadata?: Readonly<Record<string, string | readonly string[]>>;
  /** Shorthand for metadata `containerd-namespace-ttrpc`. */
  readonly namespace?: string;
  /** Abandons the call (CanceledError); ttrpc cannot tell the server. */
  readonly signal?: AbortSignal;
}

interface PendingCall {
  settle(err: BerthError | undefined, payload?: Buffer): void;
}

/** `unix:///run/x` (what shims print) or a bare socket path. */
export function ttrpcSocketPath(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * One ttrpc connection; calls are multiplexed on it by stream id. Statuses
 * come back as berth errors; when the connection ends, every pending call
 * fails with UnavailableError.
 */
export class TtrpcClient {
  private readonly socket: Socket;
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, PendingCall>();
  private readonly peer: string;
  private nextStreamId = 1;
  private lastError: Error | undefined;
  private closed: UnavailableError | undefined;

  constructor(target: string | Socket) {
    this.peer = typeof target === 'string' ? ttrpcSocketPath(target) : 'ttrpc peer';
    this.socket = typeof target === 'string' ? createConnection(this.peer) : target;
    this.socket.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
    });
    this.socket.on('error', (err) => {
      this.lastError = err;
    });
    this.socket.on('close', () => this.end());
    if (this.socket.destroyed) this.end();
  }

  call(service: string, method: string, request: Uint8Array, opts: TtrpcCallOptions = {}): Promise<Buffer> {
    if (this.closed) return Promise.reject(this.closed);
    if (opts.signal?.aborted) return Promise.reject(new CanceledError(`${service}/${method}: canceled`));
    const timeoutMs = opts.timeoutMs && opts.timeoutMs > 0 ? opts.timeoutMs : undefined;
    const message = encodeRequest({
      service,
      method,
      payload: request,
      timeoutNano: timeoutMs ? Math.max(1, Math.round(timeoutMs * 1e6)) : 0,
      metadata: metadataOf(opts),
    });
    if (message.length > MESSAGE_LENGTH_MAX) {
      return Promise.reject(
        errorFromGrpc(
          GrpcCode.RESOURCE_EXHAUSTED,
          `${service}/${method}: message length ${message.length} exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
        ),
      );
    }
    const streamId = this.nextStreamId;
    this.nextStreamId += 2;
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => call.settle(new CanceledError(`${service}/${method}: canceled`));
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => call.settle(new DeadlineExceededError(`${service}/${method}: deadline of ${timeoutMs} ms exceeded`)),
              timeoutMs,
            );
      const call: PendingCall = {
        settle: (err, payload) => {
          if (!this.pending.delete(streamId)) return;
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve(payload ?? Buffer.alloc(0));
        },
      };
      this.pending.set(streamId, call);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.socket.write(encodeFrame(streamId, MessageType.REQUEST, message));
    });
  }

  /** Closes the connection; pending calls fail with UnavailableError. */
  close(): void {
    this.socket.destroy();
    this.end();
  }

  private onFrame(frame: Frame): void {
    const call = this.pending.get(frame.streamId);
    if (!call) return; // abandoned (deadline, abort) or never ours
    if (frame.kind === 'oversize') {
      call.settle(
        errorFromGrpc(
          GrpcCode.RESOURCE_EXHAUSTED,
          `message length ${frame.length} exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`,
        ),
      );
      return;
    }
    if (frame.type !== MessageType.RESPONSE) {
      call.settle(errorFromGrpc(GrpcCode.INTERNAL, `ttrpc: unexpected message type ${frame.type} on stream ${frame.streamId}`));
      return;
    }
    try {
      const res = decodeResponse(frame.payload);
      if (res.status && res.status.code !== GrpcCode.OK) call.settle(errorFromGrpc(res.status.code, res.status.message));
      else call.settle(undefined, Buffer.from(res.payload));
    } catch (err) {
      call.settle(errorFromGrpc(GrpcCode.INTERNAL, `ttrpc: malformed response: ${errorMessage(err)}`));
    }
  }

  private end(): void {
    if (this.closed) return;
    const why = this.lastError ? `: ${this.lastError.message}` : '';
    this.closed = new UnavailableError(`ttrpc: connection to ${this.peer} closed${why}`);
    for (const call of [...this.pending.values()]) call.settle(this.closed);
  }
}

function metadataOf(opts: TtrpcCallOptions): KeyValue[] {
  const md: KeyValue[] = [];
  if (opts.namespace !== undefined) md.push({ key: TTRPC_NAMESPACE_KEY, value: opts.namespace });
  for (const [key, values] of Object.entries(opts.metadata ?? {})) {
    for (const value of typeof values === 'string' ? [values] : values) md.push({ key, value });
  }
  return md;
}

export interface TtrpcServiceClient {
  unary<Res = Record<string, any>>(method: string, req: object, opts?: TtrpcCallOptions): Promise<Res>;
}

/**
 * Typed calls to one protobuf service over ttrpc, with the codecs berth's
 * gRPC client uses (plain camelCase objects, defaults filled in).
 */
export function ttrpcService(client: TtrpcClient, root: protobuf.Root, name: string): TtrpcServiceClient {
  const service = lookupService(root, name);
  return {
    async unary<Res>(method: string, req: object, opts?: TtrpcCallOptions): Promise<Res> {
      const m = service.methods[method] ?? service.methods[method.charAt(0).toUpperCase() + method.slice(1)];
      if (!m) throw new Error(`${name} has no method ${method}`);
      const bytes = await client.call(name, m.name, encodeMessage(m.resolvedRequestType as protobuf.Type, req), opts);
      return decodeMessage<Res>(m.resolvedResponseType as protobuf.Type, bytes);
    },
  };
}
