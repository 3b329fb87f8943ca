import { toTimestamp } from '@berth/api/protocol';
import { type ChildExit, mountAll, unmountAll } from '@berth/sys';
import {
  AlreadyExistsError,
  errorMessage,
  FailedPreconditionError,
  InvalidArgumentError,
  type Logger,
  NotFoundError,
  UnknownError,
} from '@berth/plugin-api';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type CgroupRef, cgroupOfProcess, readCgroupMetrics } from './cgroup-metrics.js';
import type { OomWatcher } from './oom-watcher.js';
import { ConsoleIO, ConsoleSocket, PipeIO, type ProcessIO, type StdioPaths } from './process-io.js';
import type { Reaper } from './reaper.js';
import { Runc, RuncError } from './runc.js';
import type { RuncOptions } from './runc-options.js';
import { ShimProcess } from './shim-process.js';
import { DEFAULT_RUNC_ROOT } from './socket-address.js';

/** What every container of a shim shares. */
export interface ContainerContext {
  readonly namespace: string;
  readonly reaper: Reaper;
  readonly oom: OomWatcher;
  readonly log: Logger;
  /** Where console sockets go (short paths, whatever the bundle's length). */
  readonly consoleDir: string;
  publish(topic: string, typeName: string, event: object): void;
}

export interface RootfsMount {
  readonly type: string;
  readonly source: string;
  readonly target?: string;
  readonly options: readonly string[];
}

export interface CreateParams {
  readonly id: string;
  readonly bundle: string;
  readonly rootfs: readonly RootfsMount[];
  readonly stdio: StdioPaths;
  readonly options: RuncOptions;
}

/** What the `delete` sub-command needs from a bundle after its shim died: which runtime, which root. */
export interface BundleRuntime {
  readonly binary: string;
  readonly root: string;
  readonly systemdCgroup: boolean;
}

export const BUNDLE_RUNTIME_FILE = 'berth-runtime.json';

/** Runs `p` for at most `ms`; never rejects. */
async function within(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  if (!p) return;
  await Promise.race([p.catch(() => {}), sleep(ms, undefined, { ref: false })]);
}

function readPidFile(path: string): number {
  const pid = Number(readFileSync(path, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`bad pid file ${path}`);
  return pid;
}

/** The stock shim's classification of kill errors (pkg/process checkKillError). */
function killError(text: string): Error {
  const lower = text.toLowerCase();
  if (text.includes('os: process already finished') || text.includes('container not running') || lower.includes('no such process')) {
    return new NotFoundError('process already finished: not found');
  }
  if (text.includes('does not exist')) return new NotFoundError('no such container: not found');
  return new UnknownError(`unknown error after kill: ${text}`);
}

/** The spec's own pid namespace, or none (then the init's exit must kill what it leaves, as the stock shim does). */
function hasOwnPidNamespace(spec: { linux?: { namespaces?: { type?: string; path?: string }[] } }): boolean {
  return (spec.linux?.namespaces ?? []).some((ns) => ns.type === 'pid' && !ns.path);
}

/**
 * One container of the group: its init process, its execs, its runc, its
 * mounts and cgroup. Methods follow the stock runc shim's state machine and
 * error messages, since containerd's clients show them as they are.
 */
export class Container {
  readonly init: ShimProcess;
  cgroup: CgroupRef | undefined;
  private execs: Map<string, ShimProcess> | undefined;
  private rootfsMounted = false;
  private killAllOnExit = false;

  private constructor(
    readonly id: string,
    readonly bundle: string,
    readonly runc: Runc,
    private readonly ctx: ContainerContext,
    stdio: StdioPaths,
  ) {
    this.init = new ShimProcess('', stdio);
  }

  static async create(ctx: ContainerContext, p: CreateParams): Promise<Container> {
    const { options } = p;
    if (options.systemdCgroup && !existsSync('/run/systemd/system')) {
      throw new FailedPreconditionError(
        'runc option SystemdCgroup is set but systemd is not running on this host (no /run/systemd/system): use the cgroupfs driver',
      );
    }
    let spec: { linux?: { namespaces?: { type?: string; path?: string }[] } };
    try {
      spec = JSON.parse(readFileSync(join(p.bundle, 'config.json'), 'utf8'));
    } catch (err) {
      throw new InvalidArgumentError(`cannot read the bundle's config.json: ${errorMessage(err)}`);
    }
    const runtime: BundleRuntime = {
      binary: options.binaryName || 'runc',
      root: join(options.root || DEFAULT_RUNC_ROOT, ctx.namespace),
      systemdCgroup: options.systemdCgroup,
    };
    writeFileSync(join(p.bundle, BUNDLE_RUNTIME_FILE), JSON.stringify(runtime));
    const runc = new Runc(runtime, join(p.bundle, 'log.json'), ctx.reaper);
    const c = new Container(p.id, p.bundle, runc, ctx, p.stdio);
    c.killAllOnExit = !hasOwnPidNamespace(spec);
    const rootfs = join(p.bundle, 'rootfs');
    if (p.rootfs.length > 0) {
      mkdirSync(rootfs, { recursive: true });
      mountAll(
        p.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })),
        rootfs,
      );
      c.rootfsMounted = true;
    }
    try {
      await c.createInit(options);
    } catch (err) {
      c.unmountRootfs();
      throw err;
    }
    c.cgroup = cgroupOfProcess(c.init.pid);
    return c;
  }

  private async createInit(options: RuncOptions): Promise<void> {
    const pidFile = join(this.bundle, 'init.pid');
    const { io, pid } = await this.spawnProcess(this.init, async (stdio, consoleSocket) => {
      await this.runc.create(this.id, this.bundle, {
        pidFile,
        consoleSocket,
        noPivot: options.noPivotRoot,
        noNewKeyring: options.noNewKeyring,
        stdio,
      });
      return readPidFile(pidFile);
    }, options);
    this.init.io = io;
    this.init.pid = pid;
  }

  /**
   * Wires stdio, runs the runtime command that makes the process (create or
   * exec), and watches the new pid before anything else can reap it.
   */
  private async spawnProcess(
    proc: ShimProcess,
    make: (stdio: (number | 'ignore' | 'pipe')[], consoleSocket: string | undefined) => Promise<number>,
    ids: { ioUid: number; ioGid: number },
  ): Promise<{ io: ProcessIO; pid: number }> {
    let pipes: PipeIO | undefined;
    let console: ConsoleSocket | undefined;
    if (proc.stdio.terminal) console = ConsoleSocket.create(this.ctx.consoleDir);
    else pipes = new PipeIO(proc.stdio, ids.ioUid, ids.ioGid);
    let pid = 0;
    try {
      await this.ctx.reaper.creatingProcesses(async () => {
        pid = await make(pipes ? pipes.runtimeStdio : ['ignore', 'pipe', 'pipe'], console?.path);
        this.ctx.reaper.watch(pid, (exit) => this.onExit(proc, exit));
      });
      pipes?.releaseProcessEnds();
      const io = pipes ?? new ConsoleIO((console as ConsoleSocket).receiveMaster(), proc.stdio);
      return { io, pid };
    } catch (err) {
      pipes?.close();
      if (pid) {
        // Made, but its console never came: it must not linger.
        this.ctx.reaper.unwatch(pid);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
        if (proc.isInit) await this.runc.delete(this.id, true);
      }
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    } finally {
      console?.close();
    }
  }

  process(execId: string): ShimProcess {
    if (execId === '') return this.init;
    const p = this.execs?.get(execId);
    if (!p) throw new NotFoundError(`process does not exist ${execId}: not found`);
    return p;
  }

  /** Exec ids with their pids, for Pids' ProcessDetails. */
  execPids(): Map<number, string> {
    const out = new Map<number, string>();
    for (const [id, p] of this.execs ?? []) if (p.pid) out.set(p.pid, id);
    return out;
  }

  async start(execId: string): Promise<ShimProcess> {
    const p = this.process(execId);
    if (p.status !== 'created') throw new UnknownError(`cannot start a ${p.status === 'pausing' ? 'paused' : p.status} process`);
    return p.isInit ? this.startInit() : this.startExec(p);
  }

  private async startInit(): Promise<ShimProcess> {
    const p = this.init;
    p.starting = true;
    // Watched before the process runs, so an OOM right at its start is seen (the cgroup exists since create).
    if (this.cgroup) this.ctx.oom.add(this.id, this.cgroup, () => this.ctx.publish('/tasks/oom', 'containerd.events.TaskOOM', { containerId: this.id }));
    try {
      await this.runc.start(this.id);
    } catch (err) {
      this.ctx.oom.remove(this.id);
      this.finishStarting(p);
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    }
    if (p.status === 'created') p.status = 'running';
    this.ctx.publish('/tasks/start', 'containerd.events.TaskStart', { containerId: this.id, pid: p.pid });
    this.finishStarting(p);
    return p;
  }

  /** Handles an exit that came while /tasks/start was not yet published, so events keep their order. */
  private finishStarting(p: ShimProcess): void {
    p.starting = false;
    const deferred = p.deferredExit;
    p.deferredExit = undefined;
    if (deferred) this.onExit(p, { pid: p.pid, status: deferred.status });
  }

  private async startExec(p: ShimProcess): Promise<ShimProcess> {
    if (this.init.status === 'stopped') throw new UnknownError('cannot start an exec in a stopped container');
    const processFile = join(this.bundle, `.berth-exec-${p.execId}.json`);
    const pidFile = join(this.bundle, `${p.execId}.pid`);
    writeFileSync(processFile, p.spec ?? '{}');
    try {
      const { io, pid } = await this.spawnProcess(p, async (stdio, consoleSocket) => {
        await this.runc.exec(this.id, { processFile, pidFile, consoleSocket, stdio });
        return readPidFile(pidFile);
      }, { ioUid: 0, ioGid: 0 });
      p.io = io;
      p.pid = pid;
    } catch (err) {
      p.setExited(255);
      throw err;
    } finally {
      p.spec = undefined;
      rmSync(processFile, { force: true });
      rmSync(pidFile, { force: true });
    }
    if (p.status === 'created') p.status = 'running';
    this.ctx.publish('/tasks/exec-started', 'containerd.events.TaskExecStarted', {
      containerId: this.id,
      execId: p.execId,
      pid: p.pid,
    });
    return p;
  }

  private onExit(p: ShimProcess, exit: ChildExit): void {
    if (p.starting) {
      p.deferredExit = { status: exit.status };
      return;
    }
    // An OOM kill whose notification the event loop has not handled yet is told now, before the
    // exit, while the cgroup still exists (after `runc delete` it could not be told from its removal).
    if (p.isInit) this.ctx.oom.check(this.id);
    if (p.isInit && this.killAllOnExit) {
      // No pid namespace of its own: what the init leaves behind would outlive it.
      void this.runc.kill(this.id, 9, true);
    }
    const at = new Date();
    // As the stock shim: the exit is told (Wait, State, /tasks/exit) once the process's output has
    // been copied to the client, or after 2 s if something it left behind still holds the pipes.
    void within(p.io?.done, 2000).then(() => {
      p.setExited(exit.status, at);
      this.ctx.log.debug('process exited', { id: this.id, exec: p.execId || undefined, pid: exit.pid, status: exit.status });
      this.ctx.publish('/tasks/exit', 'containerd.events.TaskExit', {
        containerId: this.id,
        id: p.isInit ? this.id : p.execId,
        pid: exit.pid,
        exitStatus: exit.status,
        exitedAt: toTimestamp(at),
      });
    });
  }

  exec(execId: string, stdio: StdioPaths, spec: string): void {
    if (this.init.status === 'stopped' || this.init.status === 'deleted') throw new UnknownError('cannot exec in a stopped state');
    if (this.init.status === 'paused' || this.init.status === 'pausing') throw new UnknownError('cannot exec in a paused state');
    this.execs ??= new Map();
    if (this.execs.has(execId)) throw new AlreadyExistsError(`id ${execId}: already exists`);
    const p = new ShimProcess(execId, stdio);
    p.spec = spec;
    this.execs.set(execId, p);
    this.ctx.publish('/tasks/exec-added', 'containerd.events.TaskExecAdded', { containerId: this.id, execId });
  }

  async kill(execId: string, signal: number, all: boolean): Promise<void> {
    const p = this.process(execId);
    if (p.isInit) {
      if ((p.status === 'stopped' || p.status === 'deleted') && !all) throw new NotFoundError('process already finished: not found');
      const failure = await this.runc.kill(this.id, signal, all);
      if (failure !== undefined) throw killError(failure);
      return;
    }
    if (p.pid === 0) throw new FailedPreconditionError('process not created: failed precondition');
    if (p.status === 'stopped') throw new NotFoundError('process already finished: not found');
    try {
      process.kill(p.pid, signal);
    } catch (err) {
      throw killError(errorMessage(err).includes('ESRCH') ? 'no such process' : errorMessage(err));
    }
  }

  /** Deletes an exec (its record) or the container (runc state, stdio, rootfs mount). */
  async delete(execId: string): Promise<ShimProcess> {
    const p = this.process(execId);
    if (p.status === 'running') throw new UnknownError('cannot delete a running process');
    if (p.status === 'paused' || p.status === 'pausing') throw new UnknownError('cannot delete a paused process');
    if (!p.isInit) {
      await within(p.io?.done, 2000);
      p.io?.close();
      this.execs?.delete(execId);
      p.status = 'deleted';
      p.release();
      return p;
    }
    await within(p.io?.done, 2000);
    const neverStarted = p.status === 'created';
    let failure = await this.runc.delete(this.id, false);
    if (failure?.includes('does not exist')) failure = undefined;
    // runc killed a created init: collect its exit, so the status says so.
    if (neverStarted && p.pid) await within(p.waitExit(), 2000);
    p.io?.close();
    this.ctx.oom.remove(this.id);
    for (const e of this.execs?.values() ?? []) {
      e.io?.close();
      if (e.pid && e.status !== 'stopped') this.ctx.reaper.unwatch(e.pid);
      e.release();
    }
    try {
      this.unmountRootfs();
    } catch (err) {
      failure ??= `failed rootfs umount: ${errorMessage(err)}`;
    }
    if (failure !== undefined) throw new UnknownError(failure.startsWith('failed rootfs') ? failure : `failed to delete task: ${failure}`);
    if (p.status !== 'stopped' && p.pid) this.ctx.reaper.unwatch(p.pid);
    p.status = 'deleted';
    p.release();
    return p;
  }

  async pause(): Promise<void> {
    const p = this.init;
    switch (p.status) {
      case 'running':
        break;
      case 'created':
        throw new UnknownError('cannot pause task in created state');
      case 'paused':
      case 'pausing':
        throw new UnknownError('cannot pause a paused container');
      default:
        throw new UnknownError('cannot pause a stopped container');
    }
    p.status = 'pausing';
    try {
      await this.runc.pause(this.id);
    } catch (err) {
      if (p.status === 'pausing') p.status = 'running';
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    }
    if (p.status === 'pausing') p.status = 'paused';
    this.ctx.publish('/tasks/paused', 'containerd.events.TaskPaused', { containerId: this.id });
  }

  async resume(): Promise<void> {
    const p = this.init;
    switch (p.status) {
      case 'paused':
        break;
      case 'created':
        throw new UnknownError('cannot resume task in created state');
      case 'running':
      case 'pausing':
        throw new UnknownError('cannot resume a running process');
      default:
        throw new UnknownError('cannot resume a stopped container');
    }
    try {
      await this.runc.resume(this.id);
    } catch (err) {
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    }
    if (p.status === 'paused') p.status = 'running';
    this.ctx.publish('/tasks/resumed', 'containerd.events.TaskResumed', { containerId: this.id });
  }

  async update(resources: Uint8Array): Promise<void> {
    if (this.init.status === 'stopped' || this.init.status === 'deleted') throw new UnknownError('cannot update a stopped container');
    try {
      await this.runc.update(this.id, Buffer.from(resources));
    } catch (err) {
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    }
  }

  async pids(): Promise<number[]> {
    try {
      return await this.runc.ps(this.id);
    } catch (err) {
      throw err instanceof RuncError ? new UnknownError(err.message) : err;
    }
  }

  stats(): { typeName: string; value: Record<string, unknown> } {
    if (!this.cgroup) throw new NotFoundError('cgroup does not exist: not found');
    return readCgroupMetrics(this.cgroup);
  }

  private unmountRootfs(): void {
    if (!this.rootfsMounted) return;
    unmountAll(join(this.bundle, 'rootfs'));
    this.rootfsMounted = false;
  }
}
