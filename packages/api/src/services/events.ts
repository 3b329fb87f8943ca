import {
  type EventExchange,
  type EventPayload,
  FailedPreconditionError,
  InvalidArgumentError,
  type RequestContext,
} from '@berth/plugin-api';
import type protobuf from 'protobufjs';
import { decodeMessage, encodeMessage, fromTimestamp, toTimestamp } from '../codec.js';

type Req = Record<string, any>;

/**
 * Encodes payloads published inside berth (which carry `data`) with the
 * event types in berth's protos, once per payload however many subscribers.
 */
export class EventCodec {
  private readonly cache = new WeakMap<EventPayload, Buffer>();

  constructor(private readonly root: protobuf.Root) {}

  encode(payload: EventPayload): Uint8Array {
    if (payload.value) return payload.value;
    let bytes = this.cache.get(payload);
    if (!bytes) {
      bytes = encodeMessage(this.type(payload.typeUrl), payload.data ?? {});
      this.cache.set(payload, bytes);
    }
    return bytes;
  }

  /**
   * Incoming Any: keep the bytes, and the fields too when berth knows the
   * type (for `event.*` filters). protobufjs's bundled Any keeps the
   * snake_case field name `type_url`.
   */
  decode(any: Req | null | undefined): EventPayload {
    const typeUrl: string | undefined = any?.type_url;
    if (!any || !typeUrl) throw new InvalidArgumentError('event: must not be empty');
    const value: Uint8Array = any.value ?? new Uint8Array();
    const type = this.root.lookup(typeUrl.replace(/^.*\//, ''));
    if (!type || !('fields' in type)) return { typeUrl, value };
    try {
      return { typeUrl, value, data: decodeMessage(type as protobuf.Type, value) };
    } catch {
      throw new InvalidArgumentError(`event: payload is not a valid ${typeUrl}`);
    }
  }

  /** The wire form of a payload (google.protobuf.Any). */
  toAny(payload: EventPayload): { type_url: string; value: Uint8Array } {
    return { type_url: payload.typeUrl, value: this.encode(payload) };
  }

  private type(typeUrl: string): protobuf.Type {
    const type = this.root.lookup(typeUrl);
    if (!type || !('fields' in type)) throw new Error(`event type ${typeUrl} is not defined in berth's protos`);
    return type as protobuf.Type;
  }
}

/** containerd.services.events.v1.Events → EventExchange. */
export function eventsHandlers(exchange: EventExchange, codec: EventCodec) {
  return {
    publish: async (req: Req, ctx: RequestContext) => {
      if (!ctx.namespace) throw new FailedPreconditionError('namespace is required');
      await exchange.publish(ctx.namespace, req.topic, codec.decode(req.event));
      return {};
    },
    forward: async (req: Req) => {
      const env = req.envelope;
      if (!env) throw new InvalidArgumentError('envelope: must not be empty');
      await exchange.forward({
        timestamp: env.timestamp ? fromTimestamp(env.timestamp) : new Date(),
        namespace: env.namespace,
        topic: env.topic,
        event: codec.decode(env.event),
      });
      return {};
    },
    subscribe: async function* (req: Req, ctx: RequestContext) {
      // containerd ignores the namespace header here: subscribers see every namespace unless they filter.
      for await (const env of exchange.subscribe(req.filters ?? [], ctx.signal)) {
        yield {
          timestamp: toTimestamp(env.timestamp),
          namespace: env.namespace,
          topic: env.topic,
          event: codec.toAny(env.event),
        };
      }
    },
  };
}
