import { protoRoot } from '@berth/api/protocol';
import { DeadlineExceededError, UnavailableError } from '@berth/plugin-api';
import { TtrpcClient, type TtrpcServiceClient, ttrpcService, ttrpcSocketPath } from '@berth/ttrpc';
import { createConnection, type Socket } from 'node:net';

export const TASK_SERVICE = 'containerd.task.v2.Task';

/**
 * One ttrpc connection to a shim process, shared by every task that shim
 * serves (one for the stock shim, many for a grouped or berth shim). When the
 * connection ends without berthd closing it, the shim is gone: `onLost`
 * runs before any pending call fails, so a caller seeing the failure can
 * already tell why.
 */
export class ShimConnection {
  readonly task: TtrpcServiceClient;
  /** Keys (`ns/id`) of the tasks this shim serves. */
  readonly tasks = new Set<string>();
  private closing = false;
  private lost = false;
  private readonly client: TtrpcClient;

  private constructor(
    readonly address: string,
    socket: Socket,
    onLost: (conn: ShimConnection) => void,
  ) {
    // Registered before the client's own listener, so `lost` is set when pending calls fail.
    socket.on('close', () => {
      if (this.closing) return;
      this.lost = true;
      onLost(this);
    });
    this.client = new TtrpcClient(socket);
    this.task = ttrpcService(this.client, protoRoot(), TASK_SERVICE);
  }

  /** Connect to a shim's `unix://` address; UnavailableError when nothing answers there. */
  static connect(address: string, timeoutMs: number, onLost: (conn: ShimConnection) => void): Promise<ShimConnection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(ttrpcSocketPath(address));
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new DeadlineExceededError(`connecting to shim at ${address}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', () => {}); // the close that follows is what counts
        resolve(new ShimConnection(address, socket, onLost));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new UnavailableError(`cannot connect to shim at ${address}: ${err.message}`));
      });
    });
  }

  /** Whether the shim went away (as opposed to berthd closing the connection). */
  get isLost(): boolean {
    return this.lost;
  }

  /** Close from berthd's side: not a lost shim. */
  close(): void {
    this.closing = true;
    this.client.close();
  }
}
