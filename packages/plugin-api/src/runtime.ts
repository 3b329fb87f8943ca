import type { AnyValue } from './containers.js';
import type { RequestContext } from './context.js';
import type { Labels } from './namespaces.js';
import type { Mount } from './snapshots.js';
import { token } from './token.js';

/** The OCI runtime spec as JSON; berth does not retype all of it. */
export type OciSpec = Record<string, unknown> & { readonly ociVersion?: string };

/** `Any` type URLs of OCI specs, as containerd's clients send them (value: JSON). */
export const OciSpecType = {
  spec: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
  process: 'types.containerd.io/opencontainers/runtime-spec/1/Process',
} as const;

/** Topics of the task events (published by shims; by berthd only for a shim that died). */
export const TaskTopic = {
  create: '/tasks/create',
  start: '/tasks/start',
  exit: '/tasks/exit',
  delete: '/tasks/delete',
  oom: '/tasks/oom',
  execAdded: '/tasks/exec-added',
  execStarted: '/tasks/exec-started',
  paused: '/tasks/paused',
  resumed: '/tasks/resumed',
  checkpointed: '/tasks/checkpointed',
} as const;

/** berthd serves the ttrpc Events service that shims publish to (TTRPC_ADDRESS) beside its gRPC socket. */
export const ttrpcAddressOf = (grpcAddress: string): string => `${grpcAddress}.ttrpc`;

// ---------------------------------------------------------------------------
// Spec modifiers: a contribution point.

export interface SpecModifierInput {
  readonly namespace: string;
  readonly containerId: string;
  readonly labels: Labels;
  /** The runtime the task will run under (a name or a shim path). */
  readonly runtime: string;
  /** The rootfs mounts the shim will mount; empty when the spec's root is a host directory. */
  readonly rootfs: readonly Mount[];
}

/**
 * A contribution applied in berthd at task create, so it holds for
 * containers from any client (CDI devices, seccomp, Landlock, userns).
 * Modifiers run in ascending `order`; one that throws refuses the task
 * (throw InvalidArgumentError or FailedPreconditionError with a message the
 * client will show). Modifiers get a copy of the spec and may change it in
 * place or return a new one.
 */
export interface SpecModifier {
  readonly order: number;
  modify(ctx: RequestContext, input: SpecModifierInput, spec: OciSpec): Promise<OciSpec> | OciSpec;
  /** Applied to the process of an exec (the OCI `process` object), when the modifier cares. */
  modifyExecProcess?(
    ctx: RequestContext,
    input: SpecModifierInput & { readonly execId: string },
    process: Record<string, unknown>,
  ): Promise<Record<string, unknown>> | Record<string, unknown>;
}
export const SpecModifier = token<SpecModifier>('SpecModifier', { multi: true });

// ---------------------------------------------------------------------------
// The runtime (io.containerd.runtime.v2): tasks run by shims.

/** containerd.v1.types.Status, in order (the enum's numbers are the indexes). */
export const TASK_STATUSES = ['unknown', 'created', 'running', 'stopped', 'paused', 'pausing'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Where a process's stdio goes: FIFO paths (or other URIs a shim knows) made by the client. */
export interface TaskIO {
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

/** The state of a task's init process or one of its execs. */
export interface ProcessState extends TaskIO {
  /** The container id for the init process, the exec id for an exec. */
  readonly id: string;
  readonly pid: number;
  readonly status: TaskStatus;
  readonly exitStatus: number;
  /** Absent while the process runs. */
  readonly exitedAt?: Date;
}

export interface TaskExit {
  readonly pid: number;
  readonly exitStatus: number;
  readonly exitedAt: Date;
}

export interface ProcessInfo {
  readonly pid: number;
  /** e.g. `containerd.runc.v1.ProcessDetails`; passed through from the shim. */
  readonly info?: AnyValue;
}

export interface CreateTaskOptions {
  /** The spec after every modifier ran: written to the bundle's config.json. */
  readonly spec: OciSpec;
  /** Mounted by the shim on `<bundle>/rootfs`; empty when the spec's root is a host directory. */
  readonly rootfs: readonly Mount[];
  readonly io: TaskIO;
  /** A runtime name (`io.containerd.runc.v2`) or an absolute path to a shim binary. */
  readonly runtime: string;
  /** The container's runtime options (containerd.runc.v1.Options for runc shims). */
  readonly runtimeOptions?: AnyValue;
  /** The request's options; they win over the container's, as in containerd. */
  readonly taskOptions?: AnyValue;
}

export interface ExecOptions {
  /** The OCI process (`types.containerd.io/opencontainers/runtime-spec/1/Process`). */
  readonly spec: AnyValue;
  readonly io: TaskIO;
}

/**
 * A task held by the runtime. Methods that name a process take its exec id;
 * none means the init process. Errors come back with the shim's kinds
 * (a stopped process is NotFound for kill, an exec id in use AlreadyExists, …).
 */
export interface RuntimeTask {
  readonly id: string;
  readonly namespace: string;
  readonly bundle: string;
  /** The runtime the task was created with. */
  readonly runtime: string;
  /** The init process's pid. */
  readonly pid: number;
  state(ctx: RequestContext, execId?: string): Promise<ProcessState>;
  /** Returns the started process's pid. */
  start(ctx: RequestContext, execId?: string): Promise<number>;
  kill(ctx: RequestContext, signal: number, opts?: { readonly execId?: string; readonly all?: boolean }): Promise<void>;
  exec(ctx: RequestContext, execId: string, opts: ExecOptions): Promise<void>;
  deleteProcess(ctx: RequestContext, execId: string): Promise<TaskExit>;
  resizePty(ctx: RequestContext, execId: string | undefined, width: number, height: number): Promise<void>;
  closeIO(ctx: RequestContext, execId: string | undefined): Promise<void>;
  pause(ctx: RequestContext): Promise<void>;
  resume(ctx: RequestContext): Promise<void>;
  pids(ctx: RequestContext): Promise<ProcessInfo[]>;
  update(ctx: RequestContext, resources: AnyValue | undefined, annotations: Labels): Promise<void>;
  wait(ctx: RequestContext, execId?: string): Promise<TaskExit>;
  /** The shim's metrics Any (`io.containerd.cgroups.v1.Metrics`, …). */
  stats(ctx: RequestContext): Promise<AnyValue | undefined>;
}

/**
 * io.containerd.runtime.v2 (`task`): creates tasks through shims and keeps
 * them across daemon restarts. Namespaces come from the context.
 */
export interface TaskManager {
  /** AlreadyExists when the task exists; an unknown runtime fails naming the missing shim binary. */
  create(ctx: RequestContext, id: string, opts: CreateTaskOptions): Promise<RuntimeTask>;
  /** The task, or undefined. */
  get(ctx: RequestContext, id: string): RuntimeTask | undefined;
  /** Every task of the context's namespace. */
  tasks(ctx: RequestContext): RuntimeTask[];
  /** Deletes the task's init process, stops its shim and removes the bundle. */
  delete(ctx: RequestContext, id: string): Promise<TaskExit>;
}
export const TaskManager = token<TaskManager>('TaskManager');

// ---------------------------------------------------------------------------
// The tasks service: containerd.services.tasks.v1.Tasks without the wire.

export interface CreateTaskInput {
  readonly containerId: string;
  /** Empty: the container's snapshot mounts (or none, for a spec rooted in a host directory). */
  readonly rootfs: readonly Mount[];
  readonly io: TaskIO;
  /** Task options (an Any); empty: the container's runtime options. */
  readonly options?: AnyValue;
  /** Overrides the container's runtime name. */
  readonly runtimePath?: string;
  /** A checkpoint to restore from (not implemented yet). */
  readonly checkpoint?: { readonly digest: string };
}

export interface TaskMetric {
  readonly timestamp: Date;
  readonly id: string;
  readonly data?: AnyValue;
}

/** Tasks as containerd's clients see them: namespaced, tied to containers, spec modifiers applied. */
export interface TasksService {
  create(ctx: RequestContext, input: CreateTaskInput): Promise<{ containerId: string; pid: number }>;
  start(ctx: RequestContext, containerId: string, execId?: string): Promise<number>;
  delete(ctx: RequestContext, containerId: string): Promise<TaskExit>;
  deleteProcess(ctx: RequestContext, containerId: string, execId: string): Promise<TaskExit>;
  get(ctx: RequestContext, containerId: string, execId?: string): Promise<ProcessState>;
  list(ctx: RequestContext): Promise<ProcessState[]>;
  kill(ctx: RequestContext, containerId: string, signal: number, opts?: { readonly execId?: string; readonly all?: boolean }): Promise<void>;
  exec(ctx: RequestContext, containerId: string, execId: string, opts: ExecOptions): Promise<void>;
  resizePty(ctx: RequestContext, containerId: string, execId: string | undefined, width: number, height: number): Promise<void>;
  closeIO(ctx: RequestContext, containerId: string, execId: string | undefined, stdin: boolean): Promise<void>;
  pause(ctx: RequestContext, containerId: string): Promise<void>;
  resume(ctx: RequestContext, containerId: string): Promise<void>;
  listPids(ctx: RequestContext, containerId: string): Promise<ProcessInfo[]>;
  /** NotImplemented until the stateful-containers work. */
  checkpoint(ctx: RequestContext, containerId: string): Promise<never>;
  update(ctx: RequestContext, containerId: string, resources: AnyValue | undefined, annotations: Labels): Promise<void>;
  /** Filter fields: id, namespace, runtime. */
  metrics(ctx: RequestContext, filters: readonly string[]): Promise<TaskMetric[]>;
  wait(ctx: RequestContext, containerId: string, execId?: string): Promise<TaskExit>;
}
export const TasksService = token<TasksService>('TasksService');
