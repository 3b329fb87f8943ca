import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { REPORT_FD_ENV } from './flags.js';
import { SNAPSHOT_BLOB, snapshotStatus } from './snapshot.js';

/** The shim's entry point (the `containerd-shim-berth-v1` bin): what `serve` runs from without the snapshot. */
export const SHIM_MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/**
 * V8 settings for the long-lived shim, which mostly waits: a small young
 * generation, and lite mode (no optimising compilers, lazy feedback), which
 * saves about 8 MiB of resident memory; the copying of stdio happens in
 * libuv either way. `--no-lazy` compiles every function to bytecode when its
 * script is compiled, so the start-up snapshot (built with the same flags)
 * holds the bytecode of all the shim's code, not only of what ran while it
 * was built: a group's first container no longer parses and compiles the
 * request paths as it goes (some 20 ms of the shim's CPU, `perf record` of a
 * first and a second run), for a 9.7 MiB snapshot instead of 6.3 and about
 * 6 MiB more resident at start. V8 still flushes the bytecode of functions
 * that go unused.
 */
export const SHIM_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=256', '--lite-mode', '--no-lazy'];

/** `serve`'s descriptor for its reports (and a spare's assignment): the socket after stdin, stdout and stderr. */
const REPORT_FD = 3;
const READY_TIMEOUT_MS = 20_000;
/** A spare that went away unassigned (killed, or failing to start) is replaced after this long, not at once. */
const SPARE_RETRY_MS = 10_000;
/** After this many spares in a row failed to start, the launcher keeps none (and says so once). */
const SPARE_START_FAILURES_MAX = 3;
/**
 * Room a spare's command line keeps for what an assignment adds to it
 * (namespace, id, socket, group), so `ps` and tools that look for
 * `-namespace NS` see the group a spare came to serve (proc-title.ts).
 */
const SPARE_ARGV_ROOM = 512;

/**
 * Whether `serve` starts from the V8 start-up snapshot here, or why not. The
 * first call reads the snapshot's inputs to compare them with the build (some
 * 8 ms); later ones only stat them. berthd calls it at start-up, so a group's
 * first container does not pay that.
 */
export function shimSnapshotStatus(): { readonly usable: boolean; readonly reason: string } {
  return snapshotStatus(SHIM_NODE_FLAGS);
}

/** What `serve` is started for: a group (its socket known), or, without one, as a spare. */
export interface ServeTarget {
  readonly namespace: string;
  readonly id: string;
  readonly socket: string;
  readonly group: string;
  readonly debug?: boolean;
}

/** Who the shims report to: the daemon's gRPC address, the publish binary, the environment. */
export interface ShimOrigin {
  readonly address: string;
  readonly publishBinary: string;
  /** The shims' environment (TTRPC_ADDRESS, BERTH_SHIM_IDLE_MS); this process's when absent. */
  readonly env?: NodeJS.ProcessEnv;
}

/** A `serve` waiting on descriptor 3 for the group it is to serve. */
interface Spare {
  readonly child: ChildProcess;
  readonly control: Socket;
  /** True once it reported `ready`; false when it went away first. */
  readonly ready: Promise<boolean>;
}

export interface ShimLauncherOptions {
  /**
   * Keep one spare `serve` for this origin while no shim this launcher
   * started is alive, so the next group's first container does not wait for
   * Node to start (some 50–70 ms here). Off: every group's shim starts when
   * its first container does.
   */
  readonly spare?: ShimOrigin;
  /** How long after a spare went away unassigned the next one starts; 10 s. */
  readonly spareRetryMs?: number;
  /** Where the launcher tells about its spare (started, gone, replaced). */
  readonly log?: (level: 'info' | 'warn' | 'debug', msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Starts `serve` processes, berth's long-lived shims, detached (own session,
 * stdio on /dev/null: containerd reads start's output until EOF, so nothing
 * of it may stay open in the shim), and waits for each one's one-line report
 * on descriptor 3.
 *
 * With `spare`, it also keeps at most one spare: a `serve` that has loaded
 * its code, made itself the subreaper and then waits, blocked, for an
 * assignment on descriptor 3. `launch` hands the spare its group instead of
 * starting a process; the spare then listens on the group's socket and is
 * from then on that group's shim like any other. A new spare is started only
 * when none of the shims this launcher started is alive any more, so a busy
 * engine carries no extra process; an idle one carries the spare. A spare
 * whose launcher goes away (berthd exits, even killed) reads end-of-file and
 * exits: it holds no socket, lock or container.
 */
export class ShimLauncher {
  private spare: Spare | undefined;
  private readonly live = new Set<ChildProcess>();
  private retry: NodeJS.Timeout | undefined;
  /** Spares in a row that went away before they were ready. */
  private startFailures = 0;
  private closed = false;

  constructor(private readonly opts: ShimLauncherOptions = {}) {}

  /** Starts the spare, when this launcher keeps one and none is there. */
  keepSpare(): void {
    const origin = this.opts.spare;
    if (!origin || this.closed || this.spare || this.retry || this.live.size > 0) return;
    if (this.startFailures >= SPARE_START_FAILURES_MAX) return;
    const child = spawnServe(origin, ['-spare', 'serve', ' '.repeat(SPARE_ARGV_ROOM)]);
    const control = child.stdio[REPORT_FD] as Socket;
    const spare: Spare = {
      child,
      control,
      ready: readLine(control, READY_TIMEOUT_MS).then((line) => {
        if (line === 'ready') {
          this.startFailures = 0;
          return true;
        }
        this.startFailures++;
        const givingUp = this.startFailures >= SPARE_START_FAILURES_MAX;
        this.opts.log?.('warn', givingUp ? 'the spare shim did not start; keeping none from now on' : 'the spare shim did not start', {
          pid: child.pid,
          report: line,
        });
        return false;
      }),
    };
    this.spare = spare;
    control.unref();
    child.unref();
    child.once('exit', (code, signal) => {
      if (this.spare !== spare) return; // assigned: its exit is a group shim's, counted in `live`
      this.spare = undefined;
      control.destroy();
      if (this.closed) return;
      this.opts.log?.('info', 'the spare shim exited', { pid: child.pid, code, signal });
      this.keepSpareLater();
    });
    this.opts.log?.('debug', 'spare shim started', { pid: child.pid });
  }

  /** The spare's PID while one waits or starts. */
  get sparePid(): number | undefined {
    return this.spare?.child.pid;
  }

  /**
   * A `serve` for `target`: the spare, when there is one for this origin,
   * else a new process. Answers its PID once it listens on `target.socket`.
   */
  async launch(origin: ShimOrigin, target: ServeTarget): Promise<number> {
    const assigned = await this.assignSpare(origin, target);
    if (assigned !== undefined) return assigned;
    const child = spawnServe(origin, [
      '-namespace',
      target.namespace,
      '-id',
      target.id,
      '-socket',
      target.socket,
      '-group',
      target.group,
      ...(target.debug ? ['-debug'] : []),
      'serve',
    ]);
    const control = child.stdio[REPORT_FD] as Socket;
    const line = await readLine(control, READY_TIMEOUT_MS);
    control.destroy();
    child.unref();
    if (line !== 'ok') {
      if (child.exitCode === null) child.kill('SIGKILL');
      throw new Error(`cannot start the shim: ${line.replace(/^error: /, '')}`);
    }
    this.track(child);
    return child.pid as number;
  }

  /** Ends the spare (it holds nothing to tidy) and starts no other. Group shims are left running. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    const spare = this.spare;
    this.spare = undefined;
    if (spare) {
      spare.control.destroy();
      if (spare.child.exitCode === null && spare.child.signalCode === null) spare.child.kill('SIGKILL');
    }
  }

  private track(child: ChildProcess): void {
    this.live.add(child);
    child.once('exit', () => {
      this.live.delete(child);
      if (this.live.size === 0) this.keepSpare();
    });
  }

  /** Hands the spare `target`; undefined when there is none for `origin`, or it failed (a new one is made later). */
  private async assignSpare(origin: ShimOrigin, target: ServeTarget): Promise<number | undefined> {
    const spare = this.spare;
    const mine = this.opts.spare;
    if (!spare || !mine || mine.address !== origin.address || mine.publishBinary !== origin.publishBinary) return undefined;
    this.spare = undefined; // one group's, whatever follows
    const { child, control } = spare;
    const pid = child.pid as number;
    if (!(await spare.ready)) {
      control.destroy();
      if (child.exitCode === null) child.kill('SIGKILL');
      this.keepSpareLater();
      return undefined;
    }
    this.track(child); // before its answer: a spare that dies now is a shim gone
    const answer = readLine(control, READY_TIMEOUT_MS);
    control.write(`${JSON.stringify({ namespace: target.namespace, id: target.id, socket: target.socket, group: target.group, debug: !!target.debug })}\n`);
    const line = await answer;
    control.destroy();
    if (line !== 'ok') {
      if (child.exitCode === null) child.kill('SIGKILL');
      this.opts.log?.('warn', 'the spare shim refused its group; starting one', { pid, report: line });
      return undefined;
    }
    this.opts.log?.('debug', 'spare shim assigned', { pid, namespace: target.namespace, group: target.group });
    return pid;
  }

  private keepSpareLater(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.keepSpare();
    }, this.opts.spareRetryMs ?? SPARE_RETRY_MS).unref();
  }
}

/** `node FLAGS (--snapshot-blob BLOB -- | main.js) -address A -publish-binary P …args`, reporting on descriptor 3. */
function spawnServe(origin: ShimOrigin, args: readonly string[]): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...(origin.env ?? process.env), [REPORT_FD_ENV]: String(REPORT_FD) };
  // The shim makes no TLS connection, and node parses every certificate of NODE_EXTRA_CA_CERTS
  // (and its whole root store with them) before it runs a line: 40 of 60 ms of start-up here.
  delete env.NODE_EXTRA_CA_CERTS;
  // From the start-up snapshot when it was built for this node and this code; from main.js
  // otherwise, and when NODE_OPTIONS is set (node refuses a snapshot under other V8 flags).
  const entry = !env.NODE_OPTIONS && shimSnapshotStatus().usable ? ['--snapshot-blob', SNAPSHOT_BLOB, '--'] : [SHIM_MAIN];
  const child = spawn(
    process.execPath,
    [...SHIM_NODE_FLAGS, ...entry, '-address', origin.address, '-publish-binary', origin.publishBinary, ...args],
    { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'pipe'], cwd: '/', env },
  );
  adjustOomScore(child.pid);
  return child;
}

/** The first line on `control` (without its newline), or `error: …` when it ends or times out first. */
function readLine(control: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = (line: string) => {
      clearTimeout(timer);
      control.off('data', onData);
      control.off('end', onEnd);
      control.off('close', onEnd);
      control.pause(); // nothing read between two lines is lost
      resolve(line);
    };
    const onData = (d: Buffer) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl !== -1) done(text.slice(0, nl));
    };
    const onEnd = () => done(text || 'error: the shim exited before it reported');
    const timer = setTimeout(() => done(`error: the shim did not report in ${timeoutMs} ms`), timeoutMs);
    control.on('data', onData);
    control.once('end', onEnd);
    control.once('close', onEnd);
    control.on('error', () => {});
    control.resume();
  });
}

/** One above the caller's (containerd's) score, as the stock shim sets it: the shim is killed before the daemon. */
function adjustOomScore(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(1000, own + 1)));
  } catch {}
}
