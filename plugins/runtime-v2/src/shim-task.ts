import {
  type AnyValue,
  type ExecOptions,
  FailedPreconditionError,
  type Labels,
  NotFoundError,
  type ProcessInfo,
  type ProcessState,
  type RequestContext,
  type RuntimeTask,
  TASK_STATUSES,
  type TaskExit,
  type TaskIO,
} from '@berth/plugin-api';
import type { Bundle } from './bundle.js';
import { dateOf } from './shim-binary.js';
import type { ShimConnection } from './shim-connection.js';
import type { ShimLog } from './shim-log.js';

type Wire = Record<string, any>;

const anyToWire = (a: AnyValue | undefined) => (a ? { type_url: a.typeUrl, value: a.value } : null);
const anyFromWire = (a: Wire | null | undefined): AnyValue | undefined =>
  a?.type_url ? { typeUrl: a.type_url, value: a.value ?? new Uint8Array() } : undefined;

const exitOf = (res: Wire): TaskExit => ({
  pid: res.pid ?? 0,
  exitStatus: res.exitStatus ?? 0,
  exitedAt: dateOf(res.exitedAt) ?? new Date(),
});

/**
 * A task served by a shim over ttrpc (containerd's shimTask). Once its shim
 * is lost the task is a tombstone: STOPPED with the exit status the shim's
 * `delete` reported, answering without blocking until it is deleted.
 */
export class ShimTask implements RuntimeTask {
  private lostExit: Promise<TaskExit> | undefined;
  private tombstone: TaskExit | undefined;

  constructor(
    readonly namespace: string,
    readonly id: string,
    readonly dir: Bundle,
    readonly runtime: string,
    readonly shimBinary: string,
    public pid: number,
    private io: TaskIO,
    readonly conn: ShimConnection | undefined,
    private log: ShimLog | undefined,
  ) {}

  get bundle(): string {
    return this.dir.path;
  }

  get key(): string {
    return `${this.namespace}/${this.id}`;
  }

  /** Whether the shim is gone (cleanup may still be running). */
  get isLost(): boolean {
    return this.lostExit !== undefined;
  }

  /** Record that the shim is gone; `cleanup` runs its `delete` and reports the exit. */
  markLost(cleanup: () => Promise<TaskExit>): Promise<TaskExit> {
    this.lostExit ??= cleanup().then((exit) => {
      this.tombstone = exit;
      return exit;
    });
    return this.lostExit;
  }

  /** The exit of a lost shim's task, once its cleanup finished. */
  whenLost(): Promise<TaskExit> | undefined {
    return this.lostExit;
  }

  closeLog(): void {
    this.log?.close();
    this.log = undefined;
  }

  async state(ctx: RequestContext, execId?: string): Promise<ProcessState> {
    return this.call(
      ctx,
      'State',
      { execId: execId ?? '' },
      (res): ProcessState => {
        const exitedAt = dateOf(res.exitedAt);
        return {
          id: execId ?? this.id,
          pid: res.pid ?? 0,
          status: TASK_STATUSES[res.status ?? 0] ?? 'unknown',
          stdin: res.stdin ?? '',
          stdout: res.stdout ?? '',
          stderr: res.stderr ?? '',
          terminal: !!res.terminal,
          exitStatus: res.exitStatus ?? 0,
          ...(exitedAt ? { exitedAt } : {}),
        };
      },
      (exit) => {
        if (execId) throw processGone(execId);
        return { id: this.id, ...this.io, pid: exit.pid || this.pid, status: 'stopped', exitStatus: exit.exitStatus, exitedAt: exit.exitedAt };
      },
    );
  }

  async start(ctx: RequestContext, execId?: string): Promise<number> {
    return this.call(ctx, 'Start', { execId: execId ?? '' }, (res) => res.pid ?? 0, () => {
      throw this.shimGone();
    });
  }

  async kill(ctx: RequestContext, signal: number, opts: { readonly execId?: string; readonly all?: boolean } = {}): Promise<void> {
    await this.call(ctx, 'Kill', { execId: opts.execId ?? '', signal, all: !!opts.all }, () => undefined, () => {
      // As for any stopped process (the runc shim's answer).
      throw opts.execId ? processGone(opts.execId) : new NotFoundError('process already finished: not found');
    });
  }

  async exec(ctx: RequestContext, execId: string, opts: ExecOptions): Promise<void> {
    await this.call(
      ctx,
      'Exec',
      { execId, terminal: opts.io.terminal, stdin: opts.io.stdin, stdout: opts.io.stdout, stderr: opts.io.stderr, spec: anyToWire(opts.spec) },
      () => undefined,
      () => {
        throw this.shimGone();
      },
    );
  }

  async deleteProcess(ctx: RequestContext, execId: string): Promise<TaskExit> {
    return this.call(ctx, 'Delete', { execId }, exitOf, () => {
      throw processGone(execId);
    });
  }

  /** Delete the init process in the shim (the manager then shuts the shim down and removes the bundle). */
  async deleteInit(ctx: RequestContext): Promise<TaskExit> {
    return this.call(ctx, 'Delete', { execId: '' }, exitOf, (exit) => exit);
  }

  async resizePty(ctx: RequestContext, execId: string | undefined, width: number, height: number): Promise<void> {
    await this.call(ctx, 'ResizePty', { execId: execId ?? '', width, height }, () => undefined, () => {
      throw this.shimGone();
    });
  }

  async closeIO(ctx: RequestContext, execId: string | undefined): Promise<void> {
    await this.call(ctx, 'CloseIO', { execId: execId ?? '', stdin: true }, () => undefined, () => {
      throw this.shimGone();
    });
  }

  async pause(ctx: RequestContext): Promise<void> {
    await this.call(ctx, 'Pause', {}, () => undefined, () => {
      throw this.shimGone();
    });
  }

  async resume(ctx: RequestContext): Promise<void> {
    await this.call(ctx, 'Resume', {}, () => undefined, () => {
      throw this.shimGone();
    });
  }

  async pids(ctx: RequestContext): Promise<ProcessInfo[]> {
    return this.call(
      ctx,
      'Pids',
      {},
      (res) =>
        ((res.processes ?? []) as Wire[]).map((p) => {
          const info = anyFromWire(p.info);
          return { pid: p.pid ?? 0, ...(info ? { info } : {}) };
        }),
      () => [],
    );
  }

  async update(ctx: RequestContext, resources: AnyValue | undefined, annotations: Labels): Promise<void> {
    await this.call(ctx, 'Update', { resources: anyToWire(resources), annotations: { ...annotations } }, () => undefined, () => {
      throw this.shimGone();
    });
  }

  async wait(ctx: RequestContext, execId?: string): Promise<TaskExit> {
    return this.call(ctx, 'Wait', { execId: execId ?? '' }, exitOf, (exit) => {
      if (execId) throw processGone(execId);
      return exit;
    });
  }

  async stats(ctx: RequestContext): Promise<AnyValue | undefined> {
    return this.call(ctx, 'Stats', {}, (res) => anyFromWire(res.stats), () => {
      throw new NotFoundError(`task ${this.id}: its shim exited`);
    });
  }

  /**
   * One call to the shim with the task's id and namespace. When the shim is
   * lost (before or during the call), `onLost` answers from the exit its
   * cleanup reported instead of an error from a closed connection.
   */
  private async call<T>(
    ctx: RequestContext,
    method: string,
    req: Wire,
    onResult: (res: Wire) => T,
    onLost: (exit: TaskExit) => T,
  ): Promise<T> {
    if (this.tombstone) return onLost(this.tombstone);
    if (this.lostExit || !this.conn) return onLost(await this.lostOrGone());
    try {
      const res = await this.conn.task.unary<Wire>(
        method,
        { id: this.id, ...req },
        { namespace: this.namespace, ...(ctx.signal ? { signal: ctx.signal } : {}) },
      );
      return onResult(res);
    } catch (err) {
      if (this.lostExit || this.conn.isLost) return onLost(await this.lostOrGone());
      throw err;
    }
  }

  private lostOrGone(): Promise<TaskExit> {
    if (this.lostExit) return this.lostExit;
    // The connection closed and the manager has not been told yet (it is, on the same close event).
    return Promise.reject(this.shimGone());
  }

  private shimGone(): FailedPreconditionError {
    return new FailedPreconditionError(`task ${this.id}: its shim exited`);
  }
}

function processGone(execId: string): NotFoundError {
  return new NotFoundError(`process does not exist ${execId}: not found`);
}
