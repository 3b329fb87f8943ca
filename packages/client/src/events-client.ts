import { EventCodec, fromTimestamp, protoRoot, type ServiceClient, type Timestamp } from '@berth/api';
import { type EventPayload, errorMessage, InvalidArgumentError } from '@berth/plugin-api';
import type { ClientContext, RequestOptions } from './client-context.js';

/** google.protobuf.Any as decoded: protobufjs's bundled type keeps the snake_case name. */
interface WireAny {
  type_url?: string;
  value?: Uint8Array;
}
interface WireEnvelope {
  timestamp?: Timestamp | null;
  namespace?: string;
  topic?: string;
  event?: WireAny | null;
}

/** An event as received: `event.data` holds the decoded fields when berth's protos know the type. */
export interface EventEnvelope {
  readonly timestamp: Date;
  readonly namespace: string;
  readonly topic: string;
  readonly event: {
    readonly typeUrl: string;
    readonly value: Uint8Array;
    readonly data?: Readonly<Record<string, unknown>>;
  };
}

/** containerd.services.events.v1.Events. */
export class EventsClient {
  private readonly svc: ServiceClient;
  private readonly codec = new EventCodec(protoRoot());

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.events.v1.Events');
  }

  /**
   * Events matching any of `filters` (containerd filter syntax, e.g.
   * `topic~="/namespaces/"`), from every namespace, until `signal` aborts
   * (the iteration then just ends) or the consumer stops iterating. The
   * stream opens when iteration starts. A bad filter throws
   * InvalidArgumentError from the first step.
   */
  async *subscribe(filters: readonly string[] = [], opts: RequestOptions = {}): AsyncIterable<EventEnvelope> {
    for await (const env of this.svc.serverStream<WireEnvelope>('Subscribe', { filters: [...filters] }, this.ctx.stream(opts))) {
      yield {
        timestamp: fromTimestamp(env.timestamp),
        namespace: env.namespace ?? '',
        topic: env.topic ?? '',
        event: this.decode(env.event),
      };
    }
  }

  /**
   * Publish an event in the client's namespace. Give either the encoded
   * `value`, or `data` for a type berth's protos define (it is encoded here).
   */
  async publish(topic: string, event: EventPayload, opts?: RequestOptions): Promise<void> {
    const any: WireAny = { type_url: event.typeUrl, value: this.encode(event) };
    await this.svc.unary('Publish', { topic, event: any }, this.ctx.call(opts));
  }

  private encode(event: EventPayload): Uint8Array {
    if (event.value) return event.value;
    try {
      return this.codec.encode(event);
    } catch (err) {
      throw new InvalidArgumentError(`event ${event.typeUrl}: ${errorMessage(err)}`);
    }
  }

  private decode(any: WireAny | null | undefined): EventEnvelope['event'] {
    const typeUrl: string = any?.type_url ?? '';
    const value: Uint8Array = any?.value ?? new Uint8Array();
    try {
      const { data } = this.codec.decode({ type_url: typeUrl, value });
      return data ? { typeUrl, value, data } : { typeUrl, value };
    } catch {
      // An empty or undecodable payload still reaches the subscriber, as bytes.
      return { typeUrl, value };
    }
  }
}
