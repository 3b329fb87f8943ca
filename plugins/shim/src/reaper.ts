import { type ChildExit, closeFd, type FdWatch, pidfdOpen, reapPid, reapPidfd, watchReadable } from '@berth/sys';
import type { Logger } from '@berth/plugin-api';
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

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
 * waitid on exactly those pids. Commands it runs (runc) are libuv's children,
 * which libuv waits for by pid; the stray-zombie sweep leaves those alone,
 * so no child_process 'exit' is ever stolen.
 */
export class Reaper {
  private readonly nodeChildren = new Set<number>();
  private readonly watched = new Map<number, Watched>();
  /** While positive, a command is creating processes whose pids are not known yet: the sweep must wait. */
  private creating = 0;
  private sweepQueued = false;

  constructor(private readonly log: Logger) {}

  /** Listens for SIGCHLD to reap zombies that nobody watches (orphans of orphans). */
  start(): void {
    process.on('SIGCHLD', () => this.queueSweep());
  }

  /** Runs a command to completion; never rejects for a non-zero exit. */
  run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const stdio = opts.stdio ?? [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'];
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.spawn(cmd, args, { stdio: stdio as SpawnOptions['stdio'], cwd: opts.cwd });
      } catch (err) {
        reject(err);
        return;
      }
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => {
        if (stdout.length < OUTPUT_LIMIT) stdout += d.toString();
      });
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < OUTPUT_LIMIT) stderr += d.toString();
      });
      child.stdin?.on('error', () => {});
      child.on('error', reject);
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
      if (child.stdin) child.stdin.end(opts.input);
    });
  }

  /** child_process.spawn, with the pid kept out of the sweep's reach until libuv has reaped it. */
  spawn(cmd: string, args: readonly string[], opts: SpawnOptions): ChildProcess {
    const child = spawn(cmd, args, opts);
    const pid = child.pid;
    if (pid !== undefined) {
      this.nodeChildren.add(pid);
      child.once('exit', () => this.nodeChildren.delete(pid));
    }
    return child;
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

  /** Reaps zombie children that are neither libuv's nor watched. */
  private sweep(): void {
    for (const pid of childPids()) {
      if (this.nodeChildren.has(pid) || this.watched.has(pid)) continue;
      if (!isZombie(pid)) continue;
      try {
        const exit = reapPid(pid);
        if (exit) this.log.debug('reaped stray process', { pid, status: exit.status });
      } catch {}
    }
  }
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
