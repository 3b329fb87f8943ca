import { decodeMessage, fromTimestamp, protoRoot, type ServiceClient, type Timestamp } from '@berth/api';
import { type AnyValue, InvalidArgumentError, type Mount, NotFoundError, type TaskStatus } from '@berth/plugin-api';
import { constants } from 'node:os';
import type { ClientContext, RequestOptions } from './client-context.js';
import { anyFromWire, anyToWire } from './containers-client.js';
import { processToAny, type RuntimeLinuxResources, type RuntimeProcess, resourcesToAny } from './spec/runtime-spec.js';

/** A task's process (the init process, or an exec) as Tasks.Get and List describe it. */
export interface TaskProcess {
  readonly containerId: string;
  /** The container id for the init process, the exec id for an exec. */
  readonly id: string;
  readonly pid: number;
  readonly status: TaskStatus;
  /** FIFO paths the process's stdio goes through ('' for none). */
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
  readonly exitStatus: number;
  /** Undefined while the process has not exited. */
  readonly exitedAt?: Date;
}

/** What Delete, DeleteProcess and Wait report about a process that ended. */
export interface ExitStatus {
  readonly exitStatus: number;
  readonly exitedAt?: Date;
}

export interface DeletedProcess extends ExitStatus {
  readonly id: string;
  readonly pid: number;
}

/** A process of a task (Tasks.ListPids); `execId` when the shim says which exec it belongs to. */
export interface TaskPid {
  readonly pid: number;
  readonly info?: AnyValue;
  readonly execId?: string;
}

/** Where a process's stdio goes: FIFO paths ('' for none) and whether it has a terminal. */
export interface ProcessIOConfig {
  readonly stdin?: string;
  readonly stdout?: string;
  readonly stderr?: string;
  readonly terminal?: boolean;
}

export interface CreateTaskOptions extends ProcessIOConfig, RequestOptions {
  /** The root filesystem's mounts (from the container's snapshot). */
  readonly rootfs?: readonly Mount[];
  /** Runtime options, e.g. `containerd.runc.v1.Options`. */
  readonly options?: AnyValue;
  readonly runtimePath?: string;
}

/** One task's metrics (Tasks.Metrics), with the cgroup stats decoded when their type is known. */
export interface TaskMetric {
  readonly id: string;
  readonly timestamp: Date;
  readonly data?: AnyValue;
  /** `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`, decoded (camelCase fields). */
  readonly cgroupV1?: CgroupV1Metrics;
  readonly cgroupV2?: CgroupV2Metrics;
}

/** The cgroup v1 stats ctr prints; the rest of the message is there too. */
export interface CgroupV1Metrics {
  readonly memory?: {
    readonly usage?: { readonly usage: number; readonly limit: number; readonly max: number; readonly failcnt: number } | null;
    readonly totalCache: number;
    readonly [key: string]: unknown;
  } | null;
  readonly cpu?: { readonly usage?: { readonly total: number; readonly kernel: number; readonly user: number; readonly perCpu: number[] } | null } | null;
  readonly pids?: { readonly current: number; readonly limit: number } | null;
  readonly [key: string]: unknown;
}

export interface CgroupV2Metrics {
  readonly pids?: { readonly current: number; readonly limit: number } | null;
  readonly cpu?: {
    readonly usageUsec: number;
    readonly userUsec: number;
    readonly systemUsec: number;
    readonly nrPeriods: number;
    readonly nrThrottled: number;
    readonly throttledUsec: number;
  } | null;
  readonly memory?: { readonly usage: number; readonly usageLimit: number; readonly swapUsage: number; readonly swapLimit: number; readonly [key: string]: unknown } | null;
  readonly [key: string]: unknown;
}

export const MetricsTypeUrl = {
  cgroupV1: 'io.containerd.cgroups.v1.Metrics',
  cgroupV2: 'io.containerd.cgroups.v2.Metrics',
} as const;
const PROCESS_DETAILS = 'containerd.runc.v1.ProcessDetails';

/** containerd.v1.types.Status, by number. */
const STATUS: readonly TaskStatus[] = ['unknown', 'created', 'running', 'stopped', 'paused', 'pausing'];

interface WireProcess {
  containerId?: string;
  id?: string;
  pid?: number;
  status?: number;
  stdin?: string;
  stdout?: string;
  stderr?: string;
  terminal?: boolean;
  exitStatus?: number;
  exitedAt?: Timestamp | null;
}

/** containerd sends the zero time (year 1) for a process that has not exited. */
function exitedAt(ts: Timestamp | null | undefined): Date | undefined {
  if (!ts || (!ts.seconds && !ts.nanos)) return undefined;
  const d = fromTimestamp(ts);
  return d.getUTCFullYear() <= 1 ? undefined : d;
}

const processFromWire = (p: WireProcess | null | undefined): TaskProcess => {
  const at = exitedAt(p?.exitedAt);
  return {
    containerId: p?.containerId ?? '',
    id: p?.id ?? '',
    pid: p?.pid ?? 0,
    status: STATUS[p?.status ?? 0] ?? 'unknown',
    stdin: p?.stdin ?? '',
    stdout: p?.stdout ?? '',
    stderr: p?.stderr ?? '',
    terminal: !!p?.terminal,
    exitStatus: p?.exitStatus ?? 0,
    ...(at ? { exitedAt: at } : {}),
  };
};

/**
 * A signal by name (`SIGTERM`, `TERM`, `sigkill`) or number, as containerd's
 * signal.ParseSignal; InvalidArgumentError for an unknown one.
 */
export function parseSignal(signal: string | number): number {
  if (typeof signal === 'number') {
    if (!Number.isInteger(signal) || signal <= 0 || signal > 64) throw new InvalidArgumentError(`invalid signal ${signal}`);
    return signal;
  }
  if (/^\d+$/.test(signal)) return parseSignal(Number(signal));
  const upper = signal.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  const num = (constants.signals as Record<string, number>)[name];
  if (num === undefined) throw new InvalidArgumentError(`invalid signal ${JSON.stringify(signal)}`);
  return num;
}

/** The name of a signal number (`SIGTERM`), or the number as text. */
export function signalName(signal: number): string {
  return Object.entries(constants.signals).find(([, n]) => n === signal)?.[0] ?? String(signal);
}

type MessageType = ReturnType<ReturnType<typeof protoRoot>['lookupType']>;
let typeCache: Map<string, MessageType> | undefined;
function decodeAny<T>(typeName: string, value: Uint8Array): T {
  typeCache ??= new Map();
  let type = typeCache.get(typeName);
  if (!type) {
    type = protoRoot().lookupType(typeName);
    typeCache.set(typeName, type);
  }
  return decodeMessage<T>(type, value);
}

/**
 * containerd.services.tasks.v1.Tasks: a container's running side. A task
 * is made from a container record (Create), runs its init process (Start),
 * and may run more processes (Exec). Each call names the container; `execId`
 * picks one of its exec processes instead of the init process.
 */
export class TasksClient {
  private readonly svc: ServiceClient;

  constructor(private readonly ctx: ClientContext) {
    this.svc = ctx.service('containerd.services.tasks.v1.Tasks');
  }

  /** Create the task (its init process is created, not started). AlreadyExistsError when it has one. */
  async create(containerId: string, opts: CreateTaskOptions = {}): Promise<{ containerId: string; pid: number }> {
    const res = await this.svc.unary<{ containerId?: string; pid?: number }>(
      'Create',
      {
        containerId,
        rootfs: (opts.rootfs ?? []).map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] })),
        stdin: opts.stdin ?? '',
        stdout: opts.stdout ?? '',
        stderr: opts.stderr ?? '',
        terminal: !!opts.terminal,
        options: anyToWire(opts.options),
        runtimePath: opts.runtimePath ?? '',
      },
      this.ctx.call(opts),
    );
    return { containerId: res.containerId ?? containerId, pid: res.pid ?? 0 };
  }

  /** Start the init process, or exec `execId`; returns its pid. */
  async start(containerId: string, opts: RequestOptions & { readonly execId?: string } = {}): Promise<number> {
    const res = await this.svc.unary<{ pid?: number }>('Start', { containerId, execId: opts.execId ?? '' }, this.ctx.call(opts));
    return res.pid ?? 0;
  }

  /** Delete a stopped task (FailedPreconditionError while it runs) and report how it ended. */
  async delete(containerId: string, opts?: RequestOptions): Promise<DeletedProcess> {
    return deletedFromWire(await this.svc.unary('Delete', { containerId }, this.ctx.call(opts)));
  }

  /** Delete an exec process that has exited. */
  async deleteProcess(containerId: string, execId: string, opts?: RequestOptions): Promise<DeletedProcess> {
    return deletedFromWire(await this.svc.unary('DeleteProcess', { containerId, execId }, this.ctx.call(opts)));
  }

  /** NotFoundError when the container has no task (or no such exec). */
  async get(containerId: string, opts: RequestOptions & { readonly execId?: string } = {}): Promise<TaskProcess> {
    const res = await this.svc.unary<{ process?: WireProcess }>('Get', { containerId, execId: opts.execId ?? '' }, this.ctx.call(opts));
    return processFromWire(res.process);
  }

  /** Every task in the namespace (their init processes); `filter` as containerd takes it. */
  async list(filter = '', opts?: RequestOptions): Promise<TaskProcess[]> {
    const res = await this.svc.unary<{ tasks?: WireProcess[] }>('List', { filter }, this.ctx.call(opts));
    return (res.tasks ?? []).map(processFromWire);
  }

  /**
   * Send `signal` (number or name) to the init process, an exec (`execId`),
   * or with `all` to every process of the task.
   */
  async kill(
    containerId: string,
    signal: number | string,
    opts: RequestOptions & { readonly execId?: string; readonly all?: boolean } = {},
  ): Promise<void> {
    await this.svc.unary(
      'Kill',
      { containerId, execId: opts.execId ?? '', signal: parseSignal(signal), all: !!opts.all },
      this.ctx.call(opts),
    );
  }

  /** Add exec process `execId` running `process` (start it with `start`). AlreadyExistsError for a used id. */
  async exec(containerId: string, execId: string, process: RuntimeProcess, opts: ProcessIOConfig & RequestOptions = {}): Promise<void> {
    await this.svc.unary(
      'Exec',
      {
        containerId,
        execId,
        stdin: opts.stdin ?? '',
        stdout: opts.stdout ?? '',
        stderr: opts.stderr ?? '',
        terminal: !!opts.terminal,
        spec: anyToWire(processToAny({ ...process, terminal: !!opts.terminal })),
      },
      this.ctx.call(opts),
    );
  }

  /** Set the terminal's size, in characters. */
  async resizePty(
    containerId: string,
    size: { readonly width: number; readonly height: number },
    opts: RequestOptions & { readonly execId?: string } = {},
  ): Promise<void> {
    await this.svc.unary(
      'ResizePty',
      { containerId, execId: opts.execId ?? '', width: size.width, height: size.height },
      this.ctx.call(opts),
    );
  }

  /** Close the process's stdin once the FIFO is drained (what a client does at the end of its input). */
  async closeIO(containerId: string, opts: RequestOptions & { readonly execId?: string } = {}): Promise<void> {
    await this.svc.unary('CloseIO', { containerId, execId: opts.execId ?? '', stdin: true }, this.ctx.call(opts));
  }

  async pause(containerId: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Pause', { containerId }, this.ctx.call(opts));
  }

  async resume(containerId: string, opts?: RequestOptions): Promise<void> {
    await this.svc.unary('Resume', { containerId }, this.ctx.call(opts));
  }

  /** The task's processes; `execId` is set for those the shim ties to an exec. */
  async listPids(containerId: string, opts?: RequestOptions): Promise<TaskPid[]> {
    const res = await this.svc.unary<{ processes?: { pid?: number; info?: { type_url?: string; value?: Uint8Array } | null }[] }>(
      'ListPids',
      { containerId },
      this.ctx.call(opts),
    );
    return (res.processes ?? []).map((p) => {
      const info = anyFromWire(p.info);
      let execId: string | undefined;
      if (info?.typeUrl === PROCESS_DETAILS) execId = decodeAny<{ execId?: string }>(PROCESS_DETAILS, info.value).execId || undefined;
      return { pid: p.pid ?? 0, ...(info ? { info } : {}), ...(execId ? { execId } : {}) };
    });
  }

  /** Change the running task's resources (JSON LinuxResources, as containerd's client sends them). */
  async update(
    containerId: string,
    resources: RuntimeLinuxResources | AnyValue,
    opts: RequestOptions & { readonly annotations?: Readonly<Record<string, string>> } = {},
  ): Promise<void> {
    const any = 'typeUrl' in resources && resources.value instanceof Uint8Array ? (resources as AnyValue) : resourcesToAny(resources as RuntimeLinuxResources);
    await this.svc.unary(
      'Update',
      { containerId, resources: anyToWire(any), annotations: { ...opts.annotations } },
      this.ctx.call(opts),
    );
  }

  /** Metrics of the tasks matching any filter (`id==<container>`); none means all. */
  async metrics(filters: readonly string[] = [], opts?: RequestOptions): Promise<TaskMetric[]> {
    const res = await this.svc.unary<{ metrics?: { timestamp?: Timestamp | null; id?: string; data?: { type_url?: string; value?: Uint8Array } | null }[] }>(
      'Metrics',
      { filters: [...filters] },
      this.ctx.call(opts),
    );
    return (res.metrics ?? []).map((m) => {
      const data = anyFromWire(m.data);
      const base = { id: m.id ?? '', timestamp: fromTimestamp(m.timestamp), ...(data ? { data } : {}) };
      if (data?.typeUrl === MetricsTypeUrl.cgroupV1) return { ...base, cgroupV1: decodeAny<CgroupV1Metrics>(data.typeUrl, data.value) };
      if (data?.typeUrl === MetricsTypeUrl.cgroupV2) return { ...base, cgroupV2: decodeAny<CgroupV2Metrics>(data.typeUrl, data.value) };
      return base;
    });
  }

  /** One task's metrics (NotFoundError when it has no task, or the daemon reports none). */
  async metric(containerId: string, opts?: RequestOptions): Promise<TaskMetric> {
    const [m] = await this.metrics([`id==${containerId}`], opts);
    if (!m) throw new NotFoundError(`no metrics for task ${containerId}`);
    return m;
  }

  /**
   * Wait for the init process (or exec `execId`) to exit. No deadline unless
   * `timeout` is given; abort `signal` to stop waiting.
   */
  async wait(containerId: string, opts: RequestOptions & { readonly execId?: string } = {}): Promise<ExitStatus> {
    const res = await this.svc.unary<{ exitStatus?: number; exitedAt?: Timestamp | null }>(
      'Wait',
      { containerId, execId: opts.execId ?? '' },
      this.ctx.stream(opts),
    );
    const at = exitedAt(res.exitedAt);
    return { exitStatus: res.exitStatus ?? 0, ...(at ? { exitedAt: at } : {}) };
  }
}

function deletedFromWire(res: { id?: string; pid?: number; exitStatus?: number; exitedAt?: Timestamp | null }): DeletedProcess {
  const at = exitedAt(res.exitedAt);
  return { id: res.id ?? '', pid: res.pid ?? 0, exitStatus: res.exitStatus ?? 0, ...(at ? { exitedAt: at } : {}) };
}
