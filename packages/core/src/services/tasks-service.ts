import {
  AlreadyExistsError,
  type AnyValue,
  type Container,
  type ContainersService,
  type CreateTaskInput,
  type ExecOptions,
  errorKindOf,
  errorMessage,
  FailedPreconditionError,
  InvalidArgumentError,
  isNotFound,
  type Labels,
  type Mount,
  NotFoundError,
  NotImplementedError,
  type OciSpec,
  OciSpecType,
  type ProcessInfo,
  type ProcessState,
  parseFilters,
  type RequestContext,
  type RuntimeTask,
  type SnapshotsService,
  type SpecModifier,
  type SpecModifierInput,
  type TaskExit,
  type TaskManager,
  type TaskMetric,
  type TasksService,
  validateIdentifier,
} from '@berth/plugin-api';
import { requireNamespace } from './request.js';

/** A spec modifier with the id of the plugin that contributed it. */
export interface NamedSpecModifier {
  readonly id: string;
  readonly modifier: SpecModifier;
}

/** Contributions in the order they apply: ascending `order`, then plugin id. */
export function orderedModifiers(byId: ReadonlyMap<string, SpecModifier>): NamedSpecModifier[] {
  return [...byId]
    .map(([id, modifier]) => ({ id, modifier }))
    .sort((a, b) => a.modifier.order - b.modifier.order || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * containerd's tasks service (services/tasks/local.go): every task belongs to
 * a container; its spec is the container's after every spec modifier ran, so
 * modifiers hold for containers made by any client. Errors from the runtime
 * (and so from the shim) keep their kinds, as containerd passes them on.
 */
export class TasksServiceImpl implements TasksService {
  constructor(
    private readonly containers: ContainersService,
    private readonly runtime: TaskManager,
    private readonly modifiers: readonly NamedSpecModifier[] = [],
    private readonly snapshots?: SnapshotsService,
  ) {}

  async create(ctx: RequestContext, input: CreateTaskInput): Promise<{ containerId: string; pid: number }> {
    const namespace = requireNamespace(ctx);
    const id = input.containerId;
    if (input.checkpoint?.digest) {
      throw new NotImplementedError('restoring a task from a checkpoint is not implemented yet');
    }
    const container = await this.containers.get(ctx, id);
    if (this.runtime.get(ctx, id)) throw new AlreadyExistsError(`task ${id}: already exists`);
    const runtime = input.runtimePath || container.runtime.name;
    const rootfs = input.rootfs.length > 0 ? input.rootfs : await this.snapshotMounts(ctx, container);
    const modifierInput: SpecModifierInput = { namespace, containerId: id, labels: container.labels, runtime, rootfs };
    const spec = await this.applyModifiers(ctx, modifierInput, specOf(container));
    const task = await this.runtime.create(ctx, id, {
      spec,
      rootfs,
      io: input.io,
      runtime,
      ...(container.runtime.options ? { runtimeOptions: container.runtime.options } : {}),
      ...(input.options?.typeUrl ? { taskOptions: input.options } : {}),
    });
    return { containerId: id, pid: task.pid };
  }

  async start(ctx: RequestContext, containerId: string, execId?: string): Promise<number> {
    const { task } = await this.task(ctx, containerId);
    return task.start(ctx, execId || undefined);
  }

  async delete(ctx: RequestContext, containerId: string): Promise<TaskExit> {
    await this.task(ctx, containerId);
    return this.runtime.delete(ctx, containerId);
  }

  async deleteProcess(ctx: RequestContext, containerId: string, execId: string): Promise<TaskExit> {
    const { task } = await this.task(ctx, containerId);
    return task.deleteProcess(ctx, requireExecId(execId));
  }

  async get(ctx: RequestContext, containerId: string, execId?: string): Promise<ProcessState> {
    const { task } = await this.task(ctx, containerId);
    return task.state(ctx, execId || undefined);
  }

  async list(ctx: RequestContext): Promise<ProcessState[]> {
    requireNamespace(ctx);
    const states = await Promise.all(
      this.runtime.tasks(ctx).map((task) =>
        task.state(ctx).catch((err: unknown) => {
          // A task deleted meanwhile is simply not listed, as containerd does.
          if (isNotFound(err)) return undefined;
          throw err;
        }),
      ),
    );
    return states.filter((s): s is ProcessState => s !== undefined);
  }

  async kill(
    ctx: RequestContext,
    containerId: string,
    signal: number,
    opts: { readonly execId?: string; readonly all?: boolean } = {},
  ): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.kill(ctx, signal, { ...(opts.execId ? { execId: opts.execId } : {}), all: !!opts.all });
  }

  async exec(ctx: RequestContext, containerId: string, execId: string, opts: ExecOptions): Promise<void> {
    const namespace = requireNamespace(ctx);
    if (!execId) throw new InvalidArgumentError('exec id cannot be empty');
    const { container, task } = await this.task(ctx, containerId);
    validateExecId(execId);
    const spec = await this.applyExecModifiers(
      ctx,
      { namespace, containerId, labels: container.labels, runtime: task.runtime, rootfs: [], execId },
      opts.spec,
    );
    await task.exec(ctx, execId, { ...opts, spec });
  }

  async resizePty(ctx: RequestContext, containerId: string, execId: string | undefined, width: number, height: number): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.resizePty(ctx, execId || undefined, width, height);
  }

  async closeIO(ctx: RequestContext, containerId: string, execId: string | undefined, stdin: boolean): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    if (stdin) await task.closeIO(ctx, execId || undefined);
  }

  async pause(ctx: RequestContext, containerId: string): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.pause(ctx);
  }

  async resume(ctx: RequestContext, containerId: string): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.resume(ctx);
  }

  async listPids(ctx: RequestContext, containerId: string): Promise<ProcessInfo[]> {
    const { task } = await this.task(ctx, containerId);
    return task.pids(ctx);
  }

  async checkpoint(ctx: RequestContext, containerId: string): Promise<never> {
    await this.task(ctx, containerId);
    throw new NotImplementedError(
      'checkpoint is not implemented yet: berth will checkpoint tasks with its stateful-containers work',
    );
  }

  async update(ctx: RequestContext, containerId: string, resources: AnyValue | undefined, annotations: Labels): Promise<void> {
    const { task } = await this.task(ctx, containerId);
    await task.update(ctx, resources, annotations);
  }

  async metrics(ctx: RequestContext, filters: readonly string[]): Promise<TaskMetric[]> {
    const namespace = requireNamespace(ctx);
    const filter = parseFilters(filters);
    const matching = this.runtime.tasks(ctx).filter((task) =>
      filter.match((path) => {
        if (path.length !== 1) return undefined;
        if (path[0] === 'id') return task.id;
        if (path[0] === 'namespace') return namespace;
        if (path[0] === 'runtime') return task.runtime;
        return undefined;
      }),
    );
    const metrics = await Promise.all(
      matching.map(async (task): Promise<TaskMetric | undefined> => {
        const timestamp = new Date();
        try {
          const data = await task.stats(ctx);
          return { timestamp, id: task.id, ...(data ? { data } : {}) };
        } catch {
          // As containerd: a task whose stats fail (gone, stopped shim) is left out.
          return undefined;
        }
      }),
    );
    return metrics.filter((m): m is TaskMetric => m !== undefined);
  }

  async wait(ctx: RequestContext, containerId: string, execId?: string): Promise<TaskExit> {
    const { task } = await this.task(ctx, containerId);
    return task.wait(ctx, execId || undefined);
  }

  /** The container and its task: NotFound for either, with containerd's messages. */
  private async task(ctx: RequestContext, containerId: string): Promise<{ container: Container; task: RuntimeTask }> {
    requireNamespace(ctx);
    const container = await this.containers.get(ctx, containerId);
    const task = this.runtime.get(ctx, containerId);
    if (!task) throw new NotFoundError(`task ${containerId} not found`);
    return { container, task };
  }

  private async snapshotMounts(ctx: RequestContext, container: Container): Promise<readonly Mount[]> {
    if (!container.snapshotKey) return [];
    if (!this.snapshots) {
      throw new FailedPreconditionError(
        `container "${container.id}" has snapshot ${JSON.stringify(container.snapshotKey)} but no snapshots service is loaded`,
      );
    }
    return this.snapshots.mounts(ctx, container.snapshotter, container.snapshotKey);
  }

  private async applyModifiers(ctx: RequestContext, input: SpecModifierInput, spec: OciSpec): Promise<OciSpec> {
    let current = spec;
    for (const { id, modifier } of this.modifiers) {
      try {
        current = (await modifier.modify(ctx, input, structuredClone(current))) ?? current;
      } catch (err) {
        throw refused(id, err);
      }
    }
    return current;
  }

  private async applyExecModifiers(
    ctx: RequestContext,
    input: SpecModifierInput & { readonly execId: string },
    spec: AnyValue,
  ): Promise<AnyValue> {
    const modifiers = this.modifiers.filter((m) => m.modifier.modifyExecProcess);
    if (modifiers.length === 0) return spec;
    let process = parseJSON(spec, 'exec process spec');
    for (const { id, modifier } of modifiers) {
      try {
        process = (await modifier.modifyExecProcess?.(ctx, input, structuredClone(process))) ?? process;
      } catch (err) {
        throw refused(id, err);
      }
    }
    return { typeUrl: spec.typeUrl || OciSpecType.process, value: new TextEncoder().encode(JSON.stringify(process)) };
  }
}

function specOf(container: Container): OciSpec {
  if (!container.spec) throw new FailedPreconditionError(`container "${container.id}" has no spec`);
  return parseJSON(container.spec, `container "${container.id}" spec`) as OciSpec;
}

function parseJSON(any: AnyValue, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(any.value));
  } catch (err) {
    throw new InvalidArgumentError(`${what} (${any.typeUrl}) is not JSON: ${errorMessage(err)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} (${any.typeUrl}) is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** A modifier's berth error keeps its kind; anything else refuses the task as FailedPrecondition. */
function refused(id: string, err: unknown): Error {
  if (errorKindOf(err)) return err as Error;
  return new FailedPreconditionError(`spec modifier ${id}: ${errorMessage(err)}`);
}

function requireExecId(execId: string): string {
  if (!execId) throw new InvalidArgumentError('exec id cannot be empty');
  return execId;
}

/** containerd validates exec ids as identifiers ("invalid exec id …"). */
function validateExecId(execId: string): void {
  try {
    validateIdentifier('exec id', execId);
  } catch (err) {
    throw new InvalidArgumentError(`invalid exec id ${execId}: ${errorMessage(err)}`);
  }
}
