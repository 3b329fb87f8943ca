import { toTimestamp } from '@berth/api/protocol';
import { errorMessage, type Logger } from '@berth/plugin-api';
import { TtrpcClient, type TtrpcServiceClient, ttrpcService } from '@berth/ttrpc';
import { setTimeout as sleep } from 'node:timers/promises';
import { EVENTS_SERVICE, packAny, shimProtoRoot } from './shim-proto.js';

interface Pending {
  readonly namespace: string;
  readonly topic: string;
  readonly typeName: string;
  readonly event: object;
  /** When it happened: taken as it is queued, not as it is sent. */
  readonly at: Date;
  attempts: number;
}

const MAX_ATTEMPTS = 5;
const CALL_TIMEOUT_MS = 5000;

/**
 * Publishes task events to the daemon through the ttrpc Events service at
 * TTRPC_ADDRESS, in order. A daemon that is away (restarting) gets each
 * event retried with a backoff, as containerd's shims do, before it is dropped.
 * Sending starts on a later turn of the event loop (as the stock shim's
 * forwarding goroutine does), so the answer to the call that caused an event
 * is not held up by encoding and sending it: a group shim's first event also
 * opens the connection, some 10 ms before the answer to its first Create.
 */
export class EventPublisher {
  private readonly queue: Pending[] = [];
  private client: TtrpcClient | undefined;
  private events: TtrpcServiceClient | undefined;
  private pumping: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly address: string | undefined,
    private readonly log: Logger,
  ) {}

  /** Queues `/tasks/…` event `typeName` (e.g. containerd.events.TaskExit) for the namespace's subscribers. */
  publish(namespace: string, topic: string, typeName: string, event: object): void {
    if (!this.address || this.closed) {
      this.log.debug('event not published: no TTRPC_ADDRESS', { topic });
      return;
    }
    this.queue.push({ namespace, topic, typeName, event, at: new Date(), attempts: 0 });
    this.schedule();
  }

  private schedule(): void {
    if (this.pumping || this.closed) return;
    this.pumping = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.pump())
      .finally(() => {
        this.pumping = undefined;
        // Queued after the pump's last look at the queue: send it too.
        if (this.queue.length > 0) this.schedule();
      });
  }

  /** Resolves once everything queued was sent (or dropped), or after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.pumping) return;
    await Promise.race([this.pumping, sleep(timeoutMs, undefined, { ref: false })]);
  }

  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = undefined;
  }

  private async pump(): Promise<void> {
    while (this.queue.length > 0 && !this.closed) {
      const next = this.queue[0] as Pending;
      try {
        const envelope = { timestamp: toTimestamp(next.at), namespace: next.namespace, topic: next.topic, event: packAny(next.typeName, next.event) };
        await this.connection().unary('Forward', { envelope }, { namespace: next.namespace, timeoutMs: CALL_TIMEOUT_MS });
        this.queue.shift();
      } catch (err) {
        this.client?.close();
        this.client = undefined;
        next.attempts++;
        if (next.attempts >= MAX_ATTEMPTS) {
          this.queue.shift();
          this.log.error('dropping event after retries', { topic: next.topic, error: errorMessage(err) });
        } else {
          await sleep(Math.min(2000, 100 * 2 ** next.attempts));
        }
      }
    }
  }

  private connection(): TtrpcServiceClient {
    if (!this.client || !this.events) {
      this.client = new TtrpcClient(this.address as string);
      this.events = ttrpcService(this.client, shimProtoRoot(), EVENTS_SERVICE);
    }
    return this.events;
  }
}
