import { type DescriptorInbox, errorMessage, type Logger, NotFoundError } from '@berth/plugin-api';
import { acceptConnection, closeFd, type FdWatch, listenUnixSocket, tryReceiveFd, watchReadable } from '@berth/sys';
import { chmod, chown, rm } from 'node:fs/promises';

/** A token: what a client sends with its descriptor and names in its call. */
const TOKEN = /^[A-Za-z0-9_-]{16,64}$/;

export interface DescriptorInboxOptions {
  readonly uid?: number;
  readonly gid?: number;
  /** How long a connection may take to send its descriptor, ms. */
  readonly sendTimeoutMs?: number;
  /** How long a descriptor waits for the call that takes it before it is closed, ms. */
  readonly unclaimedMs?: number;
  /** How long `take` waits for a descriptor that has not arrived, ms. */
  readonly takeWaitMs?: number;
  /** Descriptors held at once at most; more are closed on arrival. */
  readonly maxHeld?: number;
}

interface Held {
  readonly fd: number;
  readonly timer: NodeJS.Timeout;
}

/** A client connection that has not sent its descriptor yet. */
interface Connection {
  readonly fd: number;
  readonly watch: FdWatch;
  readonly timer: NodeJS.Timeout;
}

/**
 * berthd's descriptor socket (`<grpc address>.fd`): a local client connects,
 * sends one message carrying an open descriptor (SCM_RIGHTS) and a token as
 * its bytes, and names that token in a gRPC call (LocalContent.IngestFile),
 * which takes the descriptor from here. The socket has the gRPC socket's
 * owner and mode, so it admits exactly the clients the gRPC socket does.
 * Nothing here ever blocks the event loop: the listener and each connection
 * are watched with uv_poll and read with MSG_DONTWAIT.
 */
export class DescriptorInboxServer implements DescriptorInbox {
  readonly #held = new Map<string, Held>();
  readonly #waiting = new Map<string, (fd?: number) => void>();
  readonly #connections = new Set<Connection>();
  #closed = false;

  private constructor(
    readonly path: string,
    private readonly listenFd: number,
    private readonly listenWatch: FdWatch | undefined,
    private readonly log: Logger,
    private readonly opts: Required<Omit<DescriptorInboxOptions, 'uid' | 'gid'>>,
  ) {}

  static async listen(path: string, log: Logger, options: DescriptorInboxOptions = {}): Promise<DescriptorInboxServer> {
    const opts = {
      sendTimeoutMs: options.sendTimeoutMs ?? 2000,
      unclaimedMs: options.unclaimedMs ?? 10_000,
      takeWaitMs: options.takeWaitMs ?? 2000,
      maxHeld: options.maxHeld ?? 64,
    };
    await rm(path, { force: true });
    // 0600 from the moment it exists, as the gRPC socket.
    const previous = process.umask(0o177);
    let listenFd: number;
    try {
      listenFd = listenUnixSocket(path, 64);
    } finally {
      process.umask(previous);
    }
    try {
      if ((options.uid ?? 0) !== 0 || (options.gid ?? 0) !== 0) {
        await chown(path, options.uid ?? 0, options.gid ?? 0);
        if ((options.gid ?? 0) !== 0) await chmod(path, 0o660);
      }
    } catch (err) {
      closeFd(listenFd);
      throw err;
    }
    let server: DescriptorInboxServer | undefined;
    const watch = watchReadable(listenFd, () => server?.acceptAll());
    watch.unref();
    server = new DescriptorInboxServer(path, listenFd, watch, log, opts);
    return server;
  }

  take(token: string, signal?: AbortSignal): Promise<number> {
    const held = this.#held.get(token);
    if (held) {
      this.#held.delete(token);
      clearTimeout(held.timer);
      return Promise.resolve(held.fd);
    }
    if (!TOKEN.test(token)) return Promise.reject(new NotFoundError(`no descriptor was passed with token "${token}"`));
    if (this.#waiting.has(token)) return Promise.reject(new NotFoundError(`token "${token}" is already being waited for`));
    return new Promise<number>((resolve, reject) => {
      const done = (fd?: number) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#waiting.delete(token);
        if (fd === undefined) reject(new NotFoundError(`no descriptor was passed with token "${token}"`));
        else resolve(fd);
      };
      const onAbort = () => done();
      const timer = setTimeout(done, this.opts.takeWaitMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.set(token, done);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.listenWatch?.close();
    closeFd(this.listenFd);
    for (const conn of this.#connections) this.dropConnection(conn);
    for (const [token, held] of this.#held) {
      clearTimeout(held.timer);
      closeFd(held.fd);
      this.#held.delete(token);
    }
    for (const done of [...this.#waiting.values()]) done();
    await rm(this.path, { force: true });
  }

  private acceptAll(): void {
    for (;;) {
      let fd: number | undefined;
      try {
        fd = acceptConnection(this.listenFd);
      } catch (err) {
        this.log.warn('descriptor socket: accept failed', { error: errorMessage(err) });
        return;
      }
      if (fd === undefined) return;
      const conn: Connection = {
        fd,
        watch: watchReadable(fd, () => this.receive(conn)),
        timer: setTimeout(() => {
          this.log.debug('descriptor socket: a client connected and sent nothing');
          this.dropConnection(conn);
        }, this.opts.sendTimeoutMs).unref(),
      };
      this.#connections.add(conn);
    }
  }

  private receive(conn: Connection): void {
    let got: ReturnType<typeof tryReceiveFd>;
    try {
      got = tryReceiveFd(conn.fd);
    } catch (err) {
      this.log.debug('descriptor socket: receive failed', { error: errorMessage(err) });
      this.dropConnection(conn);
      return;
    }
    if (!got) return; // woken without a message: wait for the next one
    this.dropConnection(conn); // one message per connection
    if (got.fd === undefined) return; // the client closed without sending one
    const token = got.data.toString('latin1');
    if (!TOKEN.test(token) || this.#held.has(token) || this.#held.size >= this.opts.maxHeld) {
      this.log.warn('descriptor socket: descriptor refused', {
        reason: !TOKEN.test(token) ? 'malformed token' : this.#held.has(token) ? 'token in use' : 'too many unclaimed descriptors',
      });
      closeFd(got.fd);
      return;
    }
    const waiter = this.#waiting.get(token);
    if (waiter) {
      waiter(got.fd);
      return;
    }
    const fd = got.fd;
    const timer = setTimeout(() => {
      if (this.#held.get(token)?.fd !== fd) return;
      this.#held.delete(token);
      closeFd(fd);
    }, this.opts.unclaimedMs);
    timer.unref();
    this.#held.set(token, { fd, timer });
  }

  private dropConnection(conn: Connection): void {
    if (!this.#connections.delete(conn)) return;
    clearTimeout(conn.timer);
    conn.watch.close();
    closeFd(conn.fd);
  }
}
