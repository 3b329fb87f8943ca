import * as grpc from '@grpc/grpc-js';
import { type BerthError, errorFromGrpc, GrpcCode } from '@berth/plugin-api';
import type protobuf from 'protobufjs';
import { LEASE_HEADER, NAMESPACE_HEADER } from './call-context.js';
import { decodeMessage, encodeMessage } from './codec.js';
import { MAX_MESSAGE_BYTES } from './grpc-server.js';
import { lookupService } from './proto-root.js';
import { protoRoot } from './proto-root.js';

export interface CallOptions {
  readonly namespace?: string;
  readonly lease?: string;
  readonly signal?: AbortSignal;
  /** Milliseconds. */
  readonly timeout?: number;
}

/** `unix:///path` for grpc-js from a bare socket path; other targets pass through. */
export function grpcTarget(address: string): string {
  return address.startsWith('/') ? `unix://${address}` : address;
}

/**
 * One connection to a containerd-compatible daemon (berthd or containerd),
 * shared by every service client made from it. Errors come back as berth
 * errors (NotFoundError, …), mapped from gRPC codes by the plugin API.
 */
export class GrpcConnection {
  private readonly client: grpc.Client;

  constructor(
    readonly address: string,
    private readonly root: protobuf.Root = protoRoot(),
  ) {
    this.client = new grpc.Client(grpcTarget(address), grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // As berthd's server: no channelz bookkeeping per call (nothing reads it).
      'grpc.enable_channelz': 0,
      // And wide HTTP/2 flow-control windows (the stream's and the connection's), so that 1 MiB
      // Read messages are not paced by 64 KiB window updates (see the windows of grpc-server.ts).
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
    });
  }

  service(name: string): ServiceClient {
    return new ServiceClient(this.client, this.root, name, this.address);
  }

  close(): void {
    this.client.close();
  }
}

export class ServiceClient {
  private readonly service: protobuf.Service;

  constructor(
    private readonly client: grpc.Client,
    root: protobuf.Root,
    private readonly name: string,
    private readonly address: string,
  ) {
    this.service = lookupService(root, name);
  }

  unary<Res = Record<string, any>>(method: string, req: object, opts: CallOptions = {}): Promise<Res> {
    const { path, reqType, resType } = this.method(method);
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(
        path,
        (v: object) => encodeMessage(reqType, v),
        (b: Buffer) => decodeMessage<Res>(resType, b),
        req,
        metadataOf(opts),
        callOptionsOf(opts),
        (err, res) => (err ? reject(this.error(err)) : resolve(res as Res)),
      );
      opts.signal?.addEventListener('abort', () => call.cancel(), { once: true });
    });
  }

  async *serverStream<Res = Record<string, any>>(method: string, req: object, opts: CallOptions = {}): AsyncIterable<Res> {
    const { path, reqType, resType } = this.method(method);
    const call = this.client.makeServerStreamRequest(
      path,
      (v: object) => encodeMessage(reqType, v),
      (b: Buffer) => decodeMessage<Res>(resType, b),
      req,
      metadataOf(opts),
      callOptionsOf(opts),
    );
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const res of call) yield res as Res;
    } catch (err) {
      if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && opts.signal?.aborted) return;
      throw this.error(err as grpc.ServiceError);
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  private method(name: string) {
    const m = this.service.methods[name];
    if (!m) throw new Error(`${this.name} has no method ${name}`);
    return {
      path: `/${this.name}/${m.name}`,
      reqType: m.resolvedRequestType as protobuf.Type,
      resType: m.resolvedResponseType as protobuf.Type,
    };
  }

  private error(err: grpc.ServiceError): BerthError {
    if (err.code === GrpcCode.UNAVAILABLE) {
      return errorFromGrpc(err.code, `cannot reach ${this.address}: ${err.details} (is the daemon running?)`);
    }
    return errorFromGrpc(err.code, err.details);
  }
}

function metadataOf(opts: CallOptions): grpc.Metadata {
  const md = new grpc.Metadata();
  if (opts.namespace) md.set(NAMESPACE_HEADER, opts.namespace);
  if (opts.lease) md.set(LEASE_HEADER, opts.lease);
  return md;
}

function callOptionsOf(opts: CallOptions): grpc.CallOptions {
  return opts.timeout ? { deadline: Date.now() + opts.timeout } : {};
}
