import {
  type AnyValue,
  type Mount,
  type ProcessInfo,
  type ProcessState,
  type RequestContext,
  TASK_STATUSES,
  type TaskExit,
  type TasksService,
} from '@berth/plugin-api';
import { toTimestamp } from '../codec.js';

type Req = Record<string, any>;

/** protobufjs's bundled Any keeps snake_case `type_url`. */
const anyFromWire = (a: Req | null | undefined): AnyValue | undefined =>
  a?.type_url ? { typeUrl: a.type_url, value: a.value ?? new Uint8Array() } : undefined;
const anyToWire = (a: AnyValue | undefined) => (a ? { type_url: a.typeUrl, value: a.value } : null);

/** Go's zero time, which containerd sends for a process that has not exited. */
const GO_ZERO_TIME = { seconds: -62135596800, nanos: 0 };
const timeToWire = (d: Date | undefined) => (d ? toTimestamp(d) : GO_ZERO_TIME);

const mountsFromWire = (mounts: Req[] | undefined): Mount[] =>
  (mounts ?? []).map((m) => ({ type: m.type ?? '', source: m.source ?? '', target: m.target ?? '', options: m.options ?? [] }));

const ioFromWire = (req: Req) => ({
  stdin: req.stdin ?? '',
  stdout: req.stdout ?? '',
  stderr: req.stderr ?? '',
  terminal: !!req.terminal,
});

/** containerd.v1.types.Process; containerd leaves container_id empty here. */
const processToWire = (p: ProcessState) => ({
  containerId: '',
  id: p.id,
  pid: p.pid,
  status: Math.max(0, TASK_STATUSES.indexOf(p.status)),
  stdin: p.stdin,
  stdout: p.stdout,
  stderr: p.stderr,
  terminal: p.terminal,
  exitStatus: p.exitStatus,
  exitedAt: timeToWire(p.exitedAt),
});

const exitToWire = (id: string, e: TaskExit) => ({ id, pid: e.pid, exitStatus: e.exitStatus, exitedAt: toTimestamp(e.exitedAt) });

const pidsToWire = (ps: ProcessInfo[]) => ps.map((p) => ({ pid: p.pid, info: anyToWire(p.info) }));

/** containerd.services.tasks.v1.Tasks → TasksService. */
export function tasksHandlers(svc: TasksService) {
  return {
    create: async (req: Req, ctx: RequestContext) => {
      const options = anyFromWire(req.options);
      const res = await svc.create(ctx, {
        containerId: req.containerId ?? '',
        rootfs: mountsFromWire(req.rootfs),
        io: ioFromWire(req),
        ...(options ? { options } : {}),
        ...(req.runtimePath ? { runtimePath: req.runtimePath } : {}),
        ...(req.checkpoint?.digest ? { checkpoint: { digest: req.checkpoint.digest } } : {}),
      });
      return { containerId: res.containerId, pid: res.pid };
    },
    start: async (req: Req, ctx: RequestContext) => ({ pid: await svc.start(ctx, req.containerId ?? '', req.execId || undefined) }),
    delete: async (req: Req, ctx: RequestContext) => exitToWire('', await svc.delete(ctx, req.containerId ?? '')),
    deleteProcess: async (req: Req, ctx: RequestContext) =>
      exitToWire(req.execId ?? '', await svc.deleteProcess(ctx, req.containerId ?? '', req.execId ?? '')),
    get: async (req: Req, ctx: RequestContext) => ({
      process: processToWire(await svc.get(ctx, req.containerId ?? '', req.execId || undefined)),
    }),
    // containerd 1.6 ignores ListTasksRequest.filter.
    list: async (_req: Req, ctx: RequestContext) => ({ tasks: (await svc.list(ctx)).map(processToWire) }),
    kill: async (req: Req, ctx: RequestContext) => {
      await svc.kill(ctx, req.containerId ?? '', req.signal ?? 0, { ...(req.execId ? { execId: req.execId } : {}), all: !!req.all });
      return {};
    },
    exec: async (req: Req, ctx: RequestContext) => {
      await svc.exec(ctx, req.containerId ?? '', req.execId ?? '', {
        spec: anyFromWire(req.spec) ?? { typeUrl: '', value: new Uint8Array() },
        io: ioFromWire(req),
      });
      return {};
    },
    resizePty: async (req: Req, ctx: RequestContext) => {
      await svc.resizePty(ctx, req.containerId ?? '', req.execId || undefined, req.width ?? 0, req.height ?? 0);
      return {};
    },
    closeIO: async (req: Req, ctx: RequestContext) => {
      await svc.closeIO(ctx, req.containerId ?? '', req.execId || undefined, !!req.stdin);
      return {};
    },
    pause: async (req: Req, ctx: RequestContext) => {
      await svc.pause(ctx, req.containerId ?? '');
      return {};
    },
    resume: async (req: Req, ctx: RequestContext) => {
      await svc.resume(ctx, req.containerId ?? '');
      return {};
    },
    listPids: async (req: Req, ctx: RequestContext) => ({ processes: pidsToWire(await svc.listPids(ctx, req.containerId ?? '')) }),
    checkpoint: async (req: Req, ctx: RequestContext) => svc.checkpoint(ctx, req.containerId ?? ''),
    update: async (req: Req, ctx: RequestContext) => {
      await svc.update(ctx, req.containerId ?? '', anyFromWire(req.resources), req.annotations ?? {});
      return {};
    },
    metrics: async (req: Req, ctx: RequestContext) => ({
      metrics: (await svc.metrics(ctx, req.filters ?? [])).map((m) => ({
        timestamp: toTimestamp(m.timestamp),
        id: m.id,
        data: anyToWire(m.data),
      })),
    }),
    wait: async (req: Req, ctx: RequestContext) => {
      const exit = await svc.wait(ctx, req.containerId ?? '', req.execId || undefined);
      return { exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },
  };
}
