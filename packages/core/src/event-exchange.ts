import {
  type Envelope,
  type EventExchange,
  type EventPayload,
  type FieldAdaptor,
  type Filter,
  InvalidArgumentError,
  parseFilters,
  UnavailableError,
  validateIdentifier,
} from '@berth/plugin-api';

/** Events a subscriber may fall behind by before it is cut off. */
const MAX_BACKLOG = 65_536;

interface Subscriber {
  readonly filter: Filter;
  push(envelope: Envelope): void;
}

/**
 * The event exchange: one fan-out point for every event in berth, with
 * containerd's envelope and filters. Delivery is in publish order per
 * subscriber; a subscriber that cannot keep up ends with Unavailable rather
 * than holding unbounded memory.
 */
export class EventExchangeImpl implements EventExchange {
  private readonly subscribers = new Set<Subscriber>();

  async publish(namespace: string, topic: string, event: EventPayload): Promise<void> {
    this.deliver(checkEnvelope({ timestamp: new Date(), namespace, topic, event }));
  }

  async forward(envelope: Envelope): Promise<void> {
    this.deliver(checkEnvelope(envelope));
  }

  subscribe(filters: readonly string[], signal?: AbortSignal): AsyncIterable<Envelope> {
    const filter = parseFilters(filters);
    // Read by index from one array while pushing to the other: Array#shift
    // is O(n) on a large array, which made draining a backlog quadratic.
    let queue: Envelope[] = [];
    let reading: Envelope[] = [];
    let head = 0;
    let wake: (() => void) | undefined;
    let failure: Error | undefined;
    const subscriber: Subscriber = {
      filter,
      push: (env) => {
        if (queue.length + reading.length - head >= MAX_BACKLOG) {
          failure = new UnavailableError(`event subscriber fell more than ${MAX_BACKLOG} events behind`);
          this.subscribers.delete(subscriber);
        } else {
          queue.push(env);
        }
        wake?.();
      },
    };
    // Subscribe now, not on first iteration, so no event published after
    // subscribe() returns is missed.
    if (!signal?.aborted) this.subscribers.add(subscriber);
    const subscribers = this.subscribers;
    // Unsubscribe on abort itself: a consumer that never iterates would
    // otherwise stay subscribed, holding up to MAX_BACKLOG events.
    const onAbort = () => {
      subscribers.delete(subscriber);
      wake?.();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    return {
      async *[Symbol.asyncIterator]() {
        try {
          while (!signal?.aborted) {
            if (head === reading.length) {
              reading = queue;
              queue = [];
              head = 0;
            }
            if (head < reading.length) {
              yield reading[head++] as Envelope;
              continue;
            }
            if (failure) throw failure;
            await new Promise<void>((r) => {
              wake = r;
            });
            wake = undefined;
          }
        } finally {
          subscribers.delete(subscriber);
          signal?.removeEventListener('abort', onAbort);
        }
      },
    };
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  private deliver(envelope: Envelope): void {
    const adaptor = envelopeAdaptor(envelope);
    for (const s of this.subscribers) if (s.filter.match(adaptor)) s.push(envelope);
  }
}

function checkEnvelope(envelope: Envelope): Envelope {
  validateIdentifier('namespace', envelope.namespace);
  validateTopic(envelope.topic);
  if (!envelope.event?.typeUrl) throw new InvalidArgumentError('event: must not be empty');
  return envelope;
}

/** containerd's topic rule: `/` then one or more identifier components. */
export function validateTopic(topic: string): void {
  if (!topic) throw new InvalidArgumentError('topic: must not be empty');
  if (!topic.startsWith('/')) throw new InvalidArgumentError(`topic "${topic}": must start with '/'`);
  if (topic.length === 1) throw new InvalidArgumentError(`topic "${topic}": must have at least one component`);
  for (const component of topic.slice(1).split('/')) {
    try {
      validateIdentifier('topic component', component);
    } catch {
      throw new InvalidArgumentError(`topic "${topic}": failed validation on component "${component}"`);
    }
  }
}

/**
 * Fields a filter can name: `namespace`, `topic`, and `event.<field>` for
 * events published inside berth (forwarded events carry only bytes).
 */
function envelopeAdaptor(envelope: Envelope): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'namespace':
        return envelope.namespace || undefined;
      case 'topic':
        return envelope.topic || undefined;
      case 'event': {
        let value: unknown = envelope.event.data;
        for (const part of path.slice(1)) {
          if (typeof value !== 'object' || value === null) return undefined;
          value = (value as Record<string, unknown>)[part];
        }
        return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : undefined;
      }
      default:
        return undefined;
    }
  };
}
