import { type ChildExit, closeFd, type FdWatch, pidfdOpen, pipe, posixSpawn, reapPid, reapPidfd, watchReadable } from '@berth/sys';
import type { Logger } from '@berth/plugin-api';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants } from 'node:os';

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Written to stdin, then stdin is closed. */
  readonly input?: string | Buffer;
  /** Descriptors for the child's stdin, stdout, stderr: a number passes our descriptor; 'pipe' captures. */
  readonly stdio?: readonly (number | 'pipe' | 'ignore')[];
  readonly cwd?: string;
}

interface Watched {
  readonly pidfd: number;
  readonly watch: FdWatch;
}

const OUTPUT_LIMIT = 1 << 20;

/**
 * The shim's side of process ownership. As a child subreaper it inherits
 * container processes, and it collects their exits through pidfds and
 * waitid on exactly those pids. The commands it runs (runc) are started with
 * posix_spawn and watched the same way; the stray-zombie sweep reaps only
 * what nobody watches.
 */
export class Reaper {
  private readonly watched = new Map<number, Watched>();
  /** While positive, a command is creating processes whose pids are not known yet: the sweep must wait. */
  private creating = 0;
  private sweepQueued = false;

  constructor(private readonly log: Logger) {}

  /** Listens for SIGCHLD to reap zombies that nobody watches (orphans of orphans). */
  start(): void {
    process.on('SIGCHLD', () => this.queueSweep());
  }

  /**
   * Runs a command to completion; never rejects for a non-zero exit. Started
   * with posix_spawn rather than child_process: a fork of this process held
   * its event loop 1.0 ms per runc command, posix_spawn 0.17 ms, and a
   * container's create, start and delete are three commands.
   */
  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const spec = opts.stdio ?? [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    const childEnds: number[] = [];
    const ours: (number | undefined)[] = [];
    const stdio: number[] = [];
    let pid: number;
    try {
      for (let i = 0; i < 3; i++) {
        const kind = spec[i] ?? 'ignore';
        if (typeof kind === 'number') {
          stdio.push(kind);
          ours.push(undefined);
        } else if (kind === 'ignore') {
          const fd = openSync('/dev/null', i === 0 ? 'r' : 'w');
          childEnds.push(fd);
          stdio.push(fd);
          ours.push(undefined);
        } else {
          const [r, w] = pipe();
          childEnds.push(i === 0 ? r : w);
          stdio.push(i === 0 ? r : w);
          ours.push(i === 0 ? w : r);
        }
      }
      pid = posixSpawn(cmd, args, { stdio: stdio as [number, number, number], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    } catch (err) {
      for (const fd of ours) if (fd !== undefined) closeSync(fd);
      throw err;
    } finally {
      for (const fd of childEnds) closeSync(fd);
    }
    // Watched before anything can run the sweep: the exit is ours to collect.
    const exited = new Promise<ChildExit>((resolve) => this.watch(pid, resolve));
    const [input, stdoutFd, stderrFd] = ours;
    if (input !== undefined) {
      const sink = new Socket({ fd: input, readable: false, writable: true });
      sink.on('error', () => {}); // a command that does not read its input
      sink.end(opts.input ?? '');
    }
    const [stdout, stderr] = await Promise.all([collect(stdoutFd), collect(stderrFd)]);
    const exit = await exited;
    return {
      code: exit.signal === undefined ? exit.status : null,
      signal: exit.signal === undefined ? null : signalName(exit.signal),
      stdout,
      stderr,
    };
  }

  /**
   * Holds the sweep off while `fn` runs a command that leaves children behind
   * (runc create / exec), until their pids are watched.
   */
  async creatingProcesses<T>(fn: () => Promise<T>): Promise<T> {
    this.creating++;
    try {
      return await fn();
    } finally {
      this.creating--;
      if (this.creating === 0) this.queueSweep();
    }
  }

  /**
   * Calls `onExit` once when `pid` (our child, by birth or re-parenting) exits,
   * after reaping it. A pid that is already gone reports status 255.
   */
  watch(pid: number, onExit: (exit: ChildExit) => void): void {
    if (this.watched.has(pid)) throw new Error(`pid ${pid} is already watched`);
    let pidfd: number;
    try {
      pidfd = pidfdOpen(pid);
    } catch (err) {
      this.log.warn('cannot watch process: reporting it as exited', { pid, error: (err as Error).message });
      queueMicrotask(() => onExit({ pid, status: 255 }));
      return;
    }
    const check = () => {
      let exit: ChildExit | undefined;
      try {
        exit = reapPidfd(pidfd);
      } catch (err) {
        // ECHILD: not our child after all (no subreaper above it); the pidfd still said it ended.
        this.log.warn('cannot collect exit status', { pid, error: (err as Error).message });
        exit = { pid, status: 255 };
      }
      if (!exit) return;
      this.unwatch(pid);
      onExit(exit);
    };
    const watch = watchReadable(pidfd, check);
    this.watched.set(pid, { pidfd, watch });
  }

  /** Stops watching without reaping (the process is someone else's now). */
  unwatch(pid: number): void {
    const w = this.watched.get(pid);
    if (!w) return;
    this.watched.delete(pid);
    w.watch.close();
    closeFd(w.pidfd);
  }

  private queueSweep(): void {
    if (this.sweepQueued) return;
    this.sweepQueued = true;
    setImmediate(() => {
      this.sweepQueued = false;
      if (this.creating === 0) this.sweep();
    });
  }

  /** Reaps zombie children that nobody watches. */
  private sweep(): void {
    for (const pid of childPids()) {
      if (this.watched.has(pid)) continue;
      if (!isZombie(pid)) continue;
      try {
        const exit = reapPid(pid);
        if (exit) this.log.debug('reaped stray process', { pid, status: exit.status });
      } catch {}
    }
  }
}

/** What a command wrote to one of its pipes, up to OUTPUT_LIMIT; '' for none. */
function collect(fd: number | undefined): Promise<string> {
  if (fd === undefined) return Promise.resolve('');
  return new Promise((resolve) => {
    const source = new Socket({ fd, readable: true, writable: false });
    let text = '';
    source.on('data', (d: Buffer) => {
      if (text.length < OUTPUT_LIMIT) text += d.toString();
    });
    source.on('error', () => {});
    source.on('close', () => resolve(text));
  });
}

function signalName(signal: number): NodeJS.Signals {
  const entry = Object.entries(constants.signals).find(([, n]) => n === signal);
  return (entry?.[0] ?? 'SIGKILL') as NodeJS.Signals;
}

/** Children of every thread of this process (orphans re-parent to any live thread). */
function childPids(): number[] {
  const pids: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return pids;
  }
  for (const tid of tasks) {
    try {
      for (const p of readFileSync(`/proc/self/task/${tid}/children`, 'utf8').split(' ')) if (p.trim()) pids.push(Number(p));
    } catch {}
  }
  return pids;
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}
