import {
  acceptConnection,
  closeFd,
  listenUnixSocket,
  pipe,
  receiveFd,
  setNonBlocking,
  setWindowSize,
} from '@berth/sys';
import { InvalidArgumentError } from '@berth/plugin-api';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  createWriteStream,
  fchownSync,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  rmSync,
  write as fsWrite,
} from 'node:fs';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { ReadStream } from 'node:tty';

const require = createRequire(import.meta.url);

/** The client's stdio for a process: FIFO paths (or `file://` URIs) as CreateTaskRequest / ExecProcessRequest carry them. */
export interface StdioPaths {
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

/** A process's stdio as the shim holds it, whichever way it is wired. */
export interface ProcessIO {
  /** Settles when all output was copied out: the process side closed its stdout and stderr. */
  readonly done: Promise<void>;
  /** Ends the process's stdin after copying what the client already wrote (CloseIO). */
  closeStdin(): void;
  resize(columns: number, rows: number): void;
  /** Stops copying and closes every descriptor. */
  close(): void;
}

const noop = () => {};

/**
 * An output destination: a FIFO opened O_RDWR (never blocks a libuv thread,
 * and holds a reader so `run -d` containers outlive the client), or a
 * `file://` log. Several sources may write to it; it ends after the last.
 */
class Output {
  private sources = 0;
  readonly finished: Promise<void>;

  private constructor(readonly stream: Writable) {
    this.finished = new Promise((resolve) => {
      stream.once('close', resolve);
      stream.once('finish', resolve);
      stream.once('error', resolve);
    });
    stream.on('error', noop);
  }

  static open(uri: string): Output {
    const { scheme, path } = parseStdioUri(uri);
    if (scheme === 'file') {
      mkdirSync(dirname(path), { recursive: true });
      return new Output(createWriteStream(path, { flags: 'a' }));
    }
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFIFO()) {
      closeSync(fd);
      return new Output(createWriteStream(path, { flags: 'a' }));
    }
    return new Output(new Socket({ fd, readable: false, writable: true }));
  }

  /** Copies `source` in until it ends; the destination ends after its last source. */
  attach(source: Readable): Promise<void> {
    this.sources++;
    return new Promise<void>((resolve) => {
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        source.unpipe(this.stream);
        if (--this.sources === 0) this.stream.end();
        resolve();
      };
      source.on('error', end);
      source.on('end', end);
      source.on('close', end);
      source.pipe(this.stream, { end: false });
    });
  }

  destroy(): void {
    this.stream.destroy();
  }
}

export function parseStdioUri(uri: string): { scheme: string; path: string } {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/.exec(uri);
  if (!m) return { scheme: 'fifo', path: uri };
  const scheme = m[1] as string;
  if (scheme === 'fifo' || scheme === 'file') {
    const rest = m[2] as string;
    return { scheme, path: decodeURIComponent(rest.slice(rest.indexOf('/')).split('?')[0] as string) };
  }
  if (scheme === 'binary') throw new InvalidArgumentError(`binary:// stdio (${uri}) is not supported by berth's shim`);
  throw new InvalidArgumentError(`unknown stdio scheme ${scheme} in ${uri}`);
}

/**
 * The client's stdin FIFO, opened O_RDWR|O_NONBLOCK: the shim holds a writer
 * itself, as the stock shim does, so a client that detaches (closes its end)
 * does not end the process's stdin; only CloseIO does. O_RDWR also never
 * blocks a libuv thread waiting for a peer.
 */
function openStdinFifo(path: string): { fd: number; stream: Socket } {
  const fd = openSync(parseStdioUri(path).path, constants.O_RDWR | constants.O_NONBLOCK);
  const stream = new Socket({ fd, readable: true, writable: false });
  stream.on('error', noop);
  return { fd, stream };
}

/** Moves what is buffered in `fifo` and still in the kernel's pipe to `to`, without waiting. */
function drainNow(fifo: { fd: number; stream: Socket }, write: (chunk: Buffer) => void): void {
  fifo.stream.pause();
  for (let chunk = fifo.stream.read() as Buffer | null; chunk; chunk = fifo.stream.read() as Buffer | null) write(chunk);
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(fifo.fd, buf, 0, buf.length, null);
    } catch {
      break; // EAGAIN: empty for now
    }
    if (n <= 0) break;
    write(Buffer.from(buf.subarray(0, n)));
  }
}

/**
 * Pipes between the shim and the process (real pipes, as the stock shim
 * gives runc: `/dev/stdout` works in the container, unlike a socket), copied
 * to and from the client's FIFOs.
 */
export class PipeIO implements ProcessIO {
  /** The descriptors runc gets as the process's stdin, stdout, stderr. */
  readonly runtimeStdio: (number | 'ignore')[] = ['ignore', 'ignore', 'ignore'];
  readonly done: Promise<void>;
  private readonly processEnds: number[] = [];
  private readonly outputs: Output[] = [];
  private readonly sources: Socket[] = [];
  private stdinFifo: { fd: number; stream: Socket } | undefined;
  private stdinPipe: Socket | undefined;

  constructor(paths: StdioPaths, uid = 0, gid = 0) {
    const copies: Promise<void>[] = [];
    try {
      if (paths.stdin) {
        this.stdinFifo = openStdinFifo(paths.stdin);
        const [r, w] = pipe();
        this.processEnds.push(r);
        this.runtimeStdio[0] = r;
        if (uid || gid) fchownSync(r, uid, gid);
        this.stdinPipe = new Socket({ fd: w, readable: false, writable: true });
        this.stdinPipe.on('error', () => this.stdinFifo?.stream.destroy());
        this.stdinFifo.stream.pipe(this.stdinPipe, { end: false });
      }
      const byPath = new Map<string, Output>();
      for (const [slot, uri] of [
        [1, paths.stdout],
        [2, paths.stderr],
      ] as const) {
        if (!uri) continue;
        let out = byPath.get(uri);
        if (!out) {
          out = Output.open(uri);
          byPath.set(uri, out);
          this.outputs.push(out);
        }
        const [r, w] = pipe();
        this.processEnds.push(w);
        this.runtimeStdio[slot] = w;
        if (uid || gid) fchownSync(w, uid, gid);
        const source = new Socket({ fd: r, readable: true, writable: false });
        this.sources.push(source);
        copies.push(out.attach(source));
      }
    } catch (err) {
      this.releaseProcessEnds();
      this.close();
      throw err;
    }
    this.done = Promise.all([...copies, ...this.outputs.map((o) => o.finished)]).then(noop);
  }

  /** Closes the shim's copies of the process's ends, once runc has handed them on. */
  releaseProcessEnds(): void {
    for (const fd of this.processEnds.splice(0)) closeSync(fd);
  }

  closeStdin(): void {
    const fifo = this.stdinFifo;
    const pipeOut = this.stdinPipe;
    this.stdinFifo = undefined;
    this.stdinPipe = undefined;
    if (!fifo || !pipeOut) return;
    fifo.stream.unpipe(pipeOut);
    drainNow(fifo, (chunk) => pipeOut.write(chunk));
    fifo.stream.destroy();
    pipeOut.end();
  }

  resize(): void {}

  close(): void {
    this.releaseProcessEnds();
    this.stdinFifo?.stream.destroy();
    this.stdinPipe?.destroy();
    for (const s of this.sources) s.destroy();
    for (const o of this.outputs) o.destroy();
  }
}

/**
 * A terminal: runc passes the pty master over the console socket; the shim
 * copies the client's stdin FIFO into it and its output to the stdout FIFO.
 */
export class ConsoleIO implements ProcessIO {
  readonly done: Promise<void>;
  private readonly reader: ReadStream;
  private readonly output: Output | undefined;
  private stdinFifo: { fd: number; stream: Socket } | undefined;
  private readonly pending: Buffer[] = [];
  private writing = false;
  private closed = false;

  constructor(
    private readonly master: number,
    paths: StdioPaths,
  ) {
    // libuv leaves a pty master blocking; reads must not block the loop.
    setNonBlocking(master);
    // node:tty when a terminal is first used: not at build time of the shim's start-up snapshot.
    const { ReadStream } = require('node:tty') as typeof import('node:tty');
    this.reader = new ReadStream(master);
    this.reader.on('error', noop); // EIO once the last slave descriptor closes: the end
    this.reader.once('close', () => {
      this.closed = true; // the master is closed with it: no more resizes or writes
    });
    this.output = paths.stdout ? Output.open(paths.stdout) : undefined;
    if (this.output) {
      this.done = Promise.all([this.output.attach(this.reader), this.output.finished]).then(noop);
    } else {
      this.reader.resume();
      this.done = new Promise((resolve) => this.reader.once('close', () => resolve()));
    }
    if (paths.stdin) {
      this.stdinFifo = openStdinFifo(paths.stdin);
      this.stdinFifo.stream.on('data', (chunk: Buffer) => this.write(chunk));
    }
  }

  closeStdin(): void {
    const fifo = this.stdinFifo;
    this.stdinFifo = undefined;
    if (!fifo) return;
    fifo.stream.removeAllListeners('data');
    drainNow(fifo, (chunk) => this.write(chunk));
    fifo.stream.destroy();
  }

  resize(columns: number, rows: number): void {
    if (!this.closed) setWindowSize(this.master, { columns, rows });
  }

  close(): void {
    this.closed = true;
    this.stdinFifo?.stream.destroy();
    this.reader.destroy(); // closes the master
    this.output?.destroy();
  }

  /** Writes to the master in order, retrying while the terminal's input queue is full. */
  private write(chunk: Buffer): void {
    this.pending.push(chunk);
    if (this.pending.length > 16) this.stdinFifo?.stream.pause();
    if (!this.writing) this.flush();
  }

  private flush(): void {
    const chunk = this.pending[0];
    if (!chunk || this.closed) {
      this.writing = false;
      this.stdinFifo?.stream.resume();
      return;
    }
    this.writing = true;
    fsWrite(this.master, chunk, 0, chunk.length, null, (err, n) => {
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') setTimeout(() => this.flush(), 10);
        else {
          this.pending.length = 0;
          this.writing = false;
        }
        return;
      }
      if (n < chunk.length) this.pending[0] = chunk.subarray(n);
      else this.pending.shift();
      this.flush();
    });
  }
}

/** Where runc sends a pty master: a listening socket under /run/berth (short path, whatever the bundle's). */
export class ConsoleSocket {
  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  static create(dir: string): ConsoleSocket {
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    const path = `${dir}/pty-${randomBytes(8).toString('hex')}.sock`;
    return new ConsoleSocket(path, listenUnixSocket(path));
  }

  /** The master that runc sent; call after the runc command that was given this socket has exited. */
  receiveMaster(): number {
    const conn = acceptConnection(this.fd);
    if (conn === undefined) throw new Error('the OCI runtime sent no console master');
    try {
      const { fd } = receiveFd(conn);
      if (fd === undefined) throw new Error('the OCI runtime closed the console socket without sending a master');
      return fd;
    } finally {
      closeFd(conn);
    }
  }

  close(): void {
    try {
      closeFd(this.fd);
    } catch {}
    rmSync(this.path, { force: true });
  }
}
