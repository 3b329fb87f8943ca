import { token } from './token.js';

/**
 * An event payload as `google.protobuf.Any`. Events published inside berth
 * carry `data` (the message's fields, camelCase) and are encoded at the edge;
 * events forwarded from outside (shims, `ctr events` publishers) carry the
 * encoded `value`. The type URL is containerd's bare name
 * (`containerd.events.NamespaceCreate`), never `type.googleapis.com/…`.
 */
export interface EventPayload {
  readonly typeUrl: string;
  readonly value?: Uint8Array;
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface Envelope {
  readonly timestamp: Date;
  readonly namespace: string;
  readonly topic: string;
  readonly event: EventPayload;
}

export interface EventExchange {
  /** Publish an event raised in `namespace`; the topic must be a path (`/images/create`). */
  publish(namespace: string, topic: string, event: EventPayload): Promise<void>;
  /** Republish an envelope made elsewhere, keeping its timestamp and namespace. */
  forward(envelope: Envelope): Promise<void>;
  /**
   * Receive envelopes matching any of `filters` (containerd filter syntax;
   * none means all) until `signal` aborts or the consumer stops iterating.
   * Throws InvalidArgumentError for a filter that does not parse.
   */
  subscribe(filters: readonly string[], signal?: AbortSignal): AsyncIterable<Envelope>;
}
export const EventExchange = token<EventExchange>('EventExchange');

/** Topics of the events berth publishes, as containerd names them. */
export const Topic = {
  NamespaceCreate: '/namespaces/create',
  NamespaceUpdate: '/namespaces/update',
  NamespaceDelete: '/namespaces/delete',
  ImageCreate: '/images/create',
  ImageUpdate: '/images/update',
  ImageDelete: '/images/delete',
  ContentDelete: '/content/delete',
  ContainerCreate: '/containers/create',
  ContainerUpdate: '/containers/update',
  ContainerDelete: '/containers/delete',
  SnapshotPrepare: '/snapshot/prepare',
  SnapshotCommit: '/snapshot/commit',
  SnapshotRemove: '/snapshot/remove',
} as const;
