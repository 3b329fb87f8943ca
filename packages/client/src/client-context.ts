import type { CallOptions, GrpcConnection, ServiceClient } from '@berth/api';

/** Per-call options every client method accepts. */
export interface RequestOptions {
  readonly signal?: AbortSignal;
  /** Milliseconds; overrides the client's timeout for this call. */
  readonly timeout?: number;
}

/**
 * What every service client shares: the connection, the namespace its calls
 * carry and the default deadline. One per BerthClient; `withNamespace` makes
 * a sibling on the same connection.
 */
export class ClientContext {
  constructor(
    readonly connection: GrpcConnection,
    readonly namespace: string,
    /** Milliseconds; undefined or 0 means no deadline. */
    readonly timeout?: number,
  ) {}

  withNamespace(namespace: string): ClientContext {
    return new ClientContext(this.connection, namespace, this.timeout);
  }

  service(name: string): ServiceClient {
    return this.connection.service(name);
  }

  /** Options for a unary call: namespace header and deadline. */
  call(opts: RequestOptions = {}): CallOptions {
    const timeout = opts.timeout ?? this.timeout;
    return { namespace: this.namespace, ...(timeout ? { timeout } : {}), ...(opts.signal ? { signal: opts.signal } : {}) };
  }

  /** Options for a long-lived stream: no deadline unless asked for. */
  stream(opts: RequestOptions = {}): CallOptions {
    return {
      namespace: this.namespace,
      ...(opts.timeout ? { timeout: opts.timeout } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    };
  }
}
