import { toTimestamp } from '@berth/api/protocol';
import {
  AlreadyExistsError,
  CanceledError,
  errorMessage,
  InvalidArgumentError,
  NotFoundError,
  NotImplementedError,
  UnavailableError,
} from '@berth/plugin-api';
import type { TtrpcRequestContext } from '@berth/ttrpc';
import { Container, type ContainerContext, type RootfsMount } from './container.js';
import { type RuncOptions, runcOptionsFromAny } from './runc-options.js';
import { STATUS_NUMBER, type ShimProcess } from './shim-process.js';
import { type AnyMessage, packAny } from './shim-proto.js';

/** Request shapes as berth's codec decodes them (camelCase, defaults filled in). */
interface IdRequest {
  id: string;
  execId: string;
}
interface CreateTaskRequest {
  id: string;
  bundle: string;
  rootfs: RootfsMount[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  checkpoint: string;
  parentCheckpoint: string;
  options: AnyMessage | null;
}
interface ExecProcessRequest extends IdRequest {
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  spec: AnyMessage | null;
}

const EMPTY = {};
const RESERVATION_MS = 30_000;
export const SHIM_VERSION = '0.1.0';

export interface TaskServiceEvents {
  /** The last container went away (Delete) or Shutdown was asked with none left. */
  idle(reason: 'delete' | 'shutdown'): void;
  containerAdded(id: string, bundle: string): void;
  containerRemoved(id: string): void;
}

const timestamp = (d: Date | undefined) => (d ? toTimestamp(d) : undefined);

/**
 * containerd.task.v2.Task for every container of this shim's group. The
 * handlers look the container up and delegate; Container holds the logic.
 */
export class TaskService {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();
  private readonly reservations = new Map<string, NodeJS.Timeout>();
  private closing = false;

  constructor(
    private readonly ctx: ContainerContext,
    private readonly events: TaskServiceEvents,
  ) {}

  /** Whether the shim may exit: no containers, none being created, none promised. */
  get idle(): boolean {
    return this.containers.size === 0 && this.creating.size === 0 && this.reservations.size === 0;
  }

  get containerIds(): string[] {
    return [...this.containers.keys()];
  }

  /** After this, Connect and Create refuse: the shim is on its way out. */
  markClosing(): void {
    this.closing = true;
    for (const t of this.reservations.values()) clearTimeout(t);
    this.reservations.clear();
  }

  /** Promises the shim to a container about to be created, so it does not exit meanwhile. */
  reserve(id: string): void {
    if (this.closing) throw new UnavailableError('shim is shutting down');
    if (!id || this.containers.has(id)) return;
    clearTimeout(this.reservations.get(id));
    const timer = setTimeout(() => {
      this.reservations.delete(id);
      if (this.idle) this.events.idle('delete');
    }, RESERVATION_MS);
    timer.unref();
    this.reservations.set(id, timer);
  }

  private get(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw new NotFoundError('container not created: not found');
    return c;
  }

  async create(r: CreateTaskRequest): Promise<{ pid: number }> {
    if (this.closing) throw new UnavailableError('shim is shutting down');
    if (r.checkpoint || r.parentCheckpoint) {
      throw new NotImplementedError("restoring from a checkpoint is not supported by berth's shim yet; see the stateful-containers work");
    }
    if (this.containers.has(r.id) || this.creating.has(r.id)) throw new AlreadyExistsError(`container ${r.id}: already exists`);
    let options: RuncOptions;
    try {
      options = runcOptionsFromAny(r.options ? { typeUrl: r.options.type_url, value: r.options.value } : undefined);
    } catch (err) {
      throw new InvalidArgumentError(errorMessage(err));
    }
    this.creating.add(r.id);
    clearTimeout(this.reservations.get(r.id));
    this.reservations.delete(r.id);
    try {
      const c = await Container.create(this.ctx, {
        id: r.id,
        bundle: r.bundle,
        rootfs: r.rootfs,
        stdio: { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal },
        options,
      });
      this.containers.set(r.id, c);
      this.events.containerAdded(r.id, r.bundle);
      this.ctx.publish('/tasks/create', 'containerd.events.TaskCreate', {
        containerId: r.id,
        bundle: r.bundle,
        rootfs: r.rootfs,
        io: { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal },
        checkpoint: r.checkpoint,
        pid: c.init.pid,
      });
      return { pid: c.init.pid };
    } finally {
      this.creating.delete(r.id);
      if (this.idle) this.events.idle('delete');
    }
  }

  async start(r: IdRequest): Promise<{ pid: number }> {
    const p = await this.get(r.id).start(r.execId);
    return { pid: p.pid };
  }

  async delete(r: IdRequest): Promise<object> {
    const c = this.get(r.id);
    const p = await c.delete(r.execId);
    if (r.execId === '') {
      this.containers.delete(r.id);
      this.events.containerRemoved(r.id);
      this.ctx.publish('/tasks/delete', 'containerd.events.TaskDelete', {
        containerId: r.id,
        pid: p.pid,
        exitStatus: p.exitStatus,
        exitedAt: timestamp(p.exitedAt ?? new Date()),
      });
      if (this.idle) this.events.idle('delete');
    }
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: timestamp(p.exitedAt ?? new Date()) };
  }

  async pids(r: { id: string }): Promise<object> {
    const c = this.get(r.id);
    const execs = c.execPids();
    const pids = await c.pids();
    return {
      processes: pids.map((pid) => {
        const execId = execs.get(pid);
        return execId ? { pid, info: packAny('containerd.runc.v1.ProcessDetails', { execId }) } : { pid };
      }),
    };
  }

  async pause(r: { id: string }): Promise<object> {
    await this.get(r.id).pause();
    return EMPTY;
  }

  async resume(r: { id: string }): Promise<object> {
    await this.get(r.id).resume();
    return EMPTY;
  }

  async checkpoint(r: { id: string }): Promise<object> {
    this.get(r.id);
    throw new NotImplementedError("checkpoint is not supported by berth's shim yet; see the stateful-containers work");
  }

  async kill(r: IdRequest & { signal: number; all: boolean }): Promise<object> {
    await this.get(r.id).kill(r.execId, r.signal, r.all);
    return EMPTY;
  }

  async exec(r: ExecProcessRequest): Promise<object> {
    const c = this.get(r.id);
    if (!r.execId) throw new InvalidArgumentError('exec id must not be empty');
    const spec = r.spec?.value ? Buffer.from(r.spec.value).toString('utf8') : '';
    if (!spec) throw new InvalidArgumentError('exec needs a process spec');
    c.exec(r.execId, { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal }, spec);
    return EMPTY;
  }

  async resizePty(r: IdRequest & { width: number; height: number }): Promise<object> {
    this.get(r.id).process(r.execId).io?.resize(r.width, r.height);
    return EMPTY;
  }

  async closeIO(r: IdRequest & { stdin: boolean }): Promise<object> {
    const p = this.get(r.id).process(r.execId);
    if (r.stdin) p.io?.closeStdin();
    return EMPTY;
  }

  async update(r: { id: string; resources: AnyMessage | null }): Promise<object> {
    const c = this.get(r.id);
    if (!r.resources?.value?.length) throw new InvalidArgumentError('update needs resources');
    await c.update(r.resources.value);
    return EMPTY;
  }

  async wait(r: IdRequest, ctx: TtrpcRequestContext): Promise<object> {
    const p = this.get(r.id).process(r.execId);
    await abortable(p.waitExit(), ctx.signal);
    return { exitStatus: p.exitStatus, exitedAt: timestamp(p.exitedAt) };
  }

  async state(r: IdRequest): Promise<object> {
    const c = this.get(r.id);
    const p: ShimProcess = c.process(r.execId);
    return {
      id: p.isInit ? c.id : p.execId,
      bundle: c.bundle,
      pid: p.pid,
      status: STATUS_NUMBER[p.status],
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exitStatus,
      exitedAt: timestamp(p.exitedAt),
      execId: p.execId,
    };
  }

  async stats(r: { id: string }): Promise<object> {
    const { typeName, value } = this.get(r.id).stats();
    return { stats: packAny(typeName, value) };
  }

  /** The shim's pid and the task's; it also holds the shim for a container about to be created (see reserve). */
  async connect(r: { id: string }): Promise<object> {
    const c = this.containers.get(r.id);
    if (!c) this.reserve(r.id);
    return { shimPid: process.pid, taskPid: c?.init.pid ?? 0, version: '' };
  }

  async shutdown(): Promise<object> {
    // As the stock shim: a shim still serving containers stays.
    if (this.containers.size === 0 && this.creating.size === 0) setImmediate(() => this.events.idle('shutdown'));
    return EMPTY;
  }
}

function abortable(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new CanceledError('wait canceled'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new CanceledError('wait canceled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
