import { once } from 'node:events';
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { ProcessIOConfig } from '../tasks-client.js';

/** The client side of a process's stdio; a missing stream means nothing is copied that way. */
export interface ProcessStreams {
  readonly stdin?: Readable | null;
  readonly stdout?: Writable | null;
  readonly stderr?: Writable | null;
}

/**
 * A FIFO end as a non-blocking libuv pipe: reads and writes wait in epoll,
 * never in a threadpool thread (a blocking FIFO open or write would hold one
 * until the other side shows up). Both opens return at once: a read end with
 * O_NONBLOCK; a write end with O_RDWR, since O_WRONLY fails (ENXIO) until a
 * reader comes — and the shim still sees EOF when we close it, as we are then
 * the last writer it waits for.
 */
function openFifo(path: string, mode: 'read' | 'write'): Socket {
  const flags = mode === 'read' ? constants.O_RDONLY | constants.O_NONBLOCK : constants.O_RDWR | constants.O_NONBLOCK;
  return new Socket({ fd: openSync(path, flags), readable: mode === 'read', writable: mode === 'write' });
}

/**
 * Copies between a process's FIFOs and the client's streams, as containerd's
 * cio does: stdin → the stdin FIFO (at its end, the FIFO is closed and the
 * daemon told with CloseIO), the stdout and stderr FIFOs → the streams until
 * the shim closes them (the process and its children exited).
 *
 * Closing it (or the client dying) only closes our ends: the shim keeps the
 * process's stdio open, so the process runs on and a later attach reads on.
 */
export class ProcessIO {
  private readonly outputs: Promise<void>[] = [];
  private readonly sockets: Socket[] = [];
  private stdinSocket?: Socket;
  private stdinEnded = false;
  private closeStdin?: () => Promise<void>;
  private stdinClosed?: Promise<void>;
  private closed = false;

  private constructor(
    private readonly config: ProcessIOConfig,
    private readonly streams: ProcessStreams,
  ) {}

  /**
   * Open the FIFOs of `config` and start copying. Output FIFOs without a
   * stream are drained and dropped, so the process never blocks on them.
   */
  static async attach(config: ProcessIOConfig, streams: ProcessStreams): Promise<ProcessIO> {
    const io = new ProcessIO(config, streams);
    try {
      await io.open();
    } catch (err) {
      io.close();
      throw err;
    }
    return io;
  }

  private async open(): Promise<void> {
    const outputs: [string | undefined, Writable | null | undefined][] = [
      [this.config.stdout, this.streams.stdout],
      [this.config.terminal ? undefined : this.config.stderr, this.streams.stderr],
    ];
    for (const [path, out] of outputs) {
      if (!path) continue;
      const sock = openFifo(path, 'read');
      this.sockets.push(sock);
      this.outputs.push(copyOut(sock, out));
    }
    if (this.config.stdin && this.streams.stdin) {
      const sock = openFifo(this.config.stdin, 'write');
      this.sockets.push(sock);
      this.copyIn(this.streams.stdin, sock);
    }
  }

  private copyIn(input: Readable, sock: Socket): void {
    this.stdinSocket = sock;
    sock.on('error', () => {}); // the shim went away: nothing left to feed
    const finish = () => {
      input.unpipe(sock);
      // A terminal's input never ends from our side (a console has no end of file, as with ctr):
      // the shim would close the terminal, output and all.
      if (this.config.terminal) return;
      // Flushed to the kernel first: what is buffered there, the shim still reads.
      sock.write(Buffer.alloc(0), () => {
        this.stdinEnded = true;
        this.maybeCloseStdin();
      });
    };
    if (input.readableEnded) {
      finish();
      return;
    }
    input.once('end', finish);
    input.pipe(sock, { end: false });
  }

  /**
   * How to tell the daemon our input has ended (TasksClient.closeIO), given
   * once the process exists: only then has the shim opened the FIFO, and
   * only then may we close our end — a FIFO that nobody holds open drops
   * what was written to it.
   */
  onStdinEnd(closeStdin: () => Promise<void>): void {
    this.closeStdin = closeStdin;
    this.maybeCloseStdin();
  }

  private maybeCloseStdin(): void {
    if (!this.stdinEnded || !this.closeStdin || this.stdinClosed || this.closed) return;
    this.stdinSocket?.destroy();
    this.stdinClosed = this.closeStdin().catch(() => {
      // The process may have exited first: nothing to close.
    });
  }

  /** Resolves when stdout and stderr have reached their end and been copied out. */
  async wait(): Promise<void> {
    await Promise.all(this.outputs);
    await this.stdinClosed;
  }

  /** Stop copying and close our FIFO ends; the FIFOs themselves stay. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.streams.stdin) {
      for (const s of this.sockets) this.streams.stdin.unpipe(s);
      this.streams.stdin.pause();
    }
    for (const s of this.sockets) s.destroy();
  }
}

async function copyOut(sock: Socket, out: Writable | null | undefined): Promise<void> {
  const done = once(sock, 'close').then(() => {});
  sock.on('error', () => {}); // a reset FIFO ends the copy like EOF
  if (out) {
    sock.on('data', (chunk: Buffer) => {
      if (!out.write(chunk)) {
        sock.pause();
        out.once('drain', () => sock.resume());
      }
    });
  } else {
    sock.resume();
  }
  await done;
}
