import {
  type AnyValue,
  type Container,
  FailedPreconditionError,
  InvalidArgumentError,
  isNotFound,
  type Labels,
  type Mount,
  NotFoundError,
} from '@berth/plugin-api';
import type { BerthClient } from './berth-client.js';
import type { RequestOptions } from './client-context.js';
import { containerSpec } from './containers-client.js';
import { FifoSet, removeContainerFifos, removeFifoDir } from './io/fifo-set.js';
import { type ProcessStreams, ProcessIO } from './io/process-io.js';
import { forwardSignals } from './io/signal-forwarder.js';
import { ConsoleSession, type TerminalSize } from './io/terminal.js';
import { parsePlatform } from './oci/platforms.js';
import { type ContainerSpecOptions, generateContainerSpec, parseMountFlag } from './spec/container-spec.js';
import { resolveImage } from './spec/image-config.js';
import { rootfsFromMounts } from './spec/rootfs-files.js';
import { type RuntimeMount, type RuntimeProcess, specToAny } from './spec/runtime-spec.js';
import { withUser } from './spec/spec-opts.js';
import type { DeletedProcess, ExitStatus } from './tasks-client.js';

/** What `ctr run` sends when no runtime is named. */
export const DEFAULT_RUNTIME = 'io.containerd.runc.v2';
/** containerd's default snapshotter on Linux. */
export const DEFAULT_SNAPSHOTTER = 'overlayfs';
/** A namespace label naming its default snapshotter (containerd's `containerd.io/defaults/snapshotter`). */
export const DEFAULT_SNAPSHOTTER_LABEL = 'containerd.io/defaults/snapshotter';
/** The container label holding the signal that stops it (containerd's WithImageStopSignal). */
export const STOP_SIGNAL_LABEL = 'io.containerd.image.config.stop-signal';
/** Runtime options of io.containerd.runc.v2 (ctr sends them empty). */
export const RUNC_OPTIONS_TYPE_URL = 'containerd.runc.v1.Options';

export interface NewContainerOptions extends Omit<ContainerSpecOptions, 'namespace' | 'id' | 'image' | 'rootfs' | 'mounts'> {
  /** The image to run; it must be unpacked for the snapshotter (as `ctr images import`/`pull` leave it). */
  readonly image: string;
  readonly id: string;
  /** Extra mounts: OCI mounts, or ctr's `type=bind,src=…,dst=…,options=rbind:ro` strings. */
  readonly mounts?: readonly (RuntimeMount | string)[];
  /** Container labels; ctr also copies them into the spec's annotations. */
  readonly labels?: Labels;
  /** Default io.containerd.runc.v2; an absolute path to a shim binary works where the daemon allows it. */
  readonly runtime?: string;
  /** Default for io.containerd.runc.v2: empty `containerd.runc.v1.Options`, as ctr sends. */
  readonly runtimeOptions?: AnyValue;
  /** Default: the namespace's `containerd.io/defaults/snapshotter` label, else overlayfs. */
  readonly snapshotter?: string;
  readonly snapshotLabels?: Labels;
  /** `os/arch[/variant]` of the image to run; default this host's. */
  readonly platform?: string;
  readonly signal?: AbortSignal;
}

/** Snapshots service calls that running a container needs. */
class Snapshots {
  constructor(private readonly client: BerthClient) {}

  private svc() {
    return this.client.context.service('containerd.services.snapshots.v1.Snapshots');
  }

  async prepare(snapshotter: string, key: string, parent: string, labels: Labels, opts?: RequestOptions): Promise<Mount[]> {
    const res = await this.svc().unary<{ mounts?: WireMount[] }>('Prepare', { snapshotter, key, parent, labels }, this.client.context.call(opts));
    return mountsFromWire(res.mounts);
  }

  async mounts(snapshotter: string, key: string, opts?: RequestOptions): Promise<Mount[]> {
    const res = await this.svc().unary<{ mounts?: WireMount[] }>('Mounts', { snapshotter, key }, this.client.context.call(opts));
    return mountsFromWire(res.mounts);
  }

  async exists(snapshotter: string, key: string, opts?: RequestOptions): Promise<boolean> {
    try {
      await this.svc().unary('Stat', { snapshotter, key }, this.client.context.call(opts));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async remove(snapshotter: string, key: string, opts?: RequestOptions): Promise<void> {
    await this.svc().unary('Remove', { snapshotter, key }, this.client.context.call(opts));
  }
}

interface WireMount {
  type?: string;
  source?: string;
  target?: string;
  options?: string[];
}
const mountsFromWire = (mounts: WireMount[] | undefined): Mount[] =>
  (mounts ?? []).map((m) => ({ type: m.type ?? '', source: m.source ?? '', ...(m.target ? { target: m.target } : {}), options: m.options ?? [] }));

/** A container's root filesystem mounts, from its snapshot. */
export function containerRootfs(client: BerthClient, container: Container, opts?: RequestOptions): Promise<Mount[]> {
  if (!container.snapshotKey) return Promise.resolve([]);
  if (!container.snapshotter) throw new InvalidArgumentError(`container ${container.id} has a snapshot key but no snapshotter`);
  return new Snapshots(client).mounts(container.snapshotter, container.snapshotKey, opts);
}

async function defaultSnapshotter(client: BerthClient, opts: RequestOptions): Promise<string> {
  const ns = await client.namespaces.get(client.namespace, opts).catch(() => undefined);
  return ns?.labels[DEFAULT_SNAPSHOTTER_LABEL] || DEFAULT_SNAPSHOTTER;
}

const LABEL_MAX = 4096;

/**
 * Create a container from an image, as `ctr run`/`ctr containers create`:
 * a writable snapshot `id` on the image's unpacked layers (its chain ID, as
 * containerd's WithNewSnapshot), the OCI spec from the image config and the
 * options (containerd's defaults first), the runtime, and labels (the
 * image's, the stop signal, the caller's). Snapshot and container are made
 * under one lease, so garbage collection cannot take the snapshot before the
 * container holds it; the snapshot is removed again if the container is refused.
 */
export async function createContainer(client: BerthClient, opts: NewContainerOptions): Promise<Container> {
  const req: RequestOptions = opts.signal ? { signal: opts.signal } : {};
  const image = await client.images.get(opts.image, req);
  const resolved = await resolveImage(client.content, image, {
    ...req,
    ...(opts.platform ? { platform: parsePlatform(opts.platform) } : {}),
  });
  const snapshotter = opts.snapshotter || (await defaultSnapshotter(client, req));
  const runtime = opts.runtime || DEFAULT_RUNTIME;
  const runtimeOptions = opts.runtimeOptions ?? (runtime === DEFAULT_RUNTIME ? { typeUrl: RUNC_OPTIONS_TYPE_URL, value: new Uint8Array() } : undefined);
  const mounts = (opts.mounts ?? []).map((m) => (typeof m === 'string' ? parseMountFlag(m) : m));

  // containerd's buildLabels: the image's labels that are valid container labels, then ours.
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(resolved.runConfig.Labels ?? {})) {
    if (k && k.length + v.length <= LABEL_MAX) labels[k] = v;
  }
  Object.assign(labels, opts.labels);
  labels[STOP_SIGNAL_LABEL] = resolved.runConfig.StopSignal || 'SIGTERM';

  return client.withLease(async (leased) => {
    const snapshots = new Snapshots(leased);
    if (resolved.chainId && !(await snapshots.exists(snapshotter, resolved.chainId, req))) {
      throw new NotFoundError(
        `image ${opts.image} is not unpacked for snapshotter ${snapshotter} (no snapshot ${resolved.chainId}): unpack it first, e.g. ctr images unpack`,
      );
    }
    const rootfsMounts = await snapshots.prepare(snapshotter, opts.id, resolved.chainId, { ...opts.snapshotLabels }, req);
    try {
      const spec = await generateContainerSpec({
        ...opts,
        namespace: client.namespace,
        image: resolved.runConfig,
        mounts,
        annotations: { ...opts.annotations, ...opts.labels },
        ...(rootfsFromMounts(rootfsMounts) ? { rootfs: rootfsFromMounts(rootfsMounts) } : {}),
      });
      return await leased.containers.create(
        {
          id: opts.id,
          labels,
          image: image.name,
          runtime: { name: runtime, ...(runtimeOptions ? { options: runtimeOptions } : {}) },
          spec: specToAny(spec),
          snapshotter,
          snapshotKey: opts.id,
        },
        req,
      );
    } catch (err) {
      await snapshots.remove(snapshotter, opts.id).catch(() => {});
      throw err;
    }
  }, req);
}

/** A started process (a task's init process, or an exec) and the client's end of its stdio. */
export class ProcessHandle {
  constructor(
    private readonly client: BerthClient,
    readonly containerId: string,
    /** Undefined for the init process. */
    readonly execId: string | undefined,
    readonly pid: number,
    readonly terminal: boolean,
    private readonly waitCall: () => Promise<ExitStatus>,
    private readonly attached: {
      /** Our ends of its FIFOs, while attached. */
      readonly io?: ProcessIO;
      /** The FIFOs this client made for it, removed with it. */
      readonly fifos?: FifoSet;
      /**
       * How long output may still come once it exited. Unbounded for FIFOs we
       * opened before the shim did; bounded when attaching late, as a shim that
       * closed its ends before we opened ours never signals their end.
       */
      readonly drainAfterExitMs?: number;
    } = {},
  ) {}

  private exit?: Promise<ExitStatus>;

  /** Our ends of its FIFOs, while attached. */
  get io(): ProcessIO | undefined {
    return this.attached.io;
  }

  private get opts() {
    return this.execId ? { execId: this.execId } : {};
  }

  /**
   * Resolves when the process exits. For an attached start the Wait call
   * began before Start, so no exit is missed.
   */
  wait(): Promise<ExitStatus> {
    this.exit ??= this.waitCall();
    return this.exit;
  }

  kill(signal: number | string): Promise<void> {
    return this.client.tasks.kill(this.containerId, signal, this.opts);
  }

  resize(size: TerminalSize): Promise<void> {
    return this.client.tasks.resizePty(this.containerId, size, this.opts);
  }

  /** Stop copying stdio and close our FIFO ends; the process runs on. */
  detach(): void {
    this.io?.close();
  }

  /**
   * Wait for it to exit and for its output to be copied, as a foreground
   * `ctr run` does: the client's terminal is raw and follows the window size
   * with a terminal, else (with `forwardSignals`) the signals this process
   * gets go to it.
   */
  async waitInForeground(opts: { readonly streams?: ProcessStreams; readonly forwardSignals?: boolean } = {}): Promise<ExitStatus> {
    const console = this.terminal ? new ConsoleSession(opts.streams?.stdin, opts.streams?.stdout) : undefined;
    console?.follow((size) => this.resize(size));
    const stop = !this.terminal && opts.forwardSignals ? forwardSignals((signal) => this.kill(signal)) : undefined;
    try {
      const status = await this.wait();
      const drained = this.io?.wait();
      const limit = this.attached.drainAfterExitMs;
      if (drained && limit !== undefined) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([drained, new Promise((r) => (timer = setTimeout(r, limit)))]);
        clearTimeout(timer);
      } else await drained;
      return status;
    } finally {
      stop?.();
      console?.restore();
      this.io?.close();
    }
  }

  /** Delete the exited process (task or exec) and its FIFOs. */
  async delete(): Promise<DeletedProcess> {
    this.io?.close();
    const deleted = this.execId
      ? await deleteProcess(this.client, this.containerId, this.execId)
      : await deleteTask(this.client, this.containerId);
    await this.attached.fifos?.remove().catch(() => {});
    return deleted;
  }
}

export interface StartOptions {
  /** The client's streams; with none, the output is dropped (or left to a later attach when detached). */
  readonly streams?: ProcessStreams;
  /** Give the process a stdin FIFO (implied by a terminal). */
  readonly stdin?: boolean;
  /** Start it and let go: FIFOs stay for `attach`, nothing is copied here. */
  readonly detach?: boolean;
  /** No FIFOs at all (ctr's --null-io). */
  readonly nullIO?: boolean;
  /** Where FIFOs go (default defaultFifoRoot()). */
  readonly fifoRoot?: string;
  readonly signal?: AbortSignal;
}

interface Launch {
  readonly containerId: string;
  /** Undefined for the init process. */
  readonly execId: string | undefined;
  readonly terminal: boolean;
  readonly create: (fifos: FifoSet | undefined) => Promise<void>;
  readonly wait: () => Promise<ExitStatus>;
  readonly start: () => Promise<number>;
  readonly closeStdin: () => Promise<void>;
  /** Undo `create` after a failed start. */
  readonly undo: () => Promise<unknown>;
}

/** FIFOs, IO, create, Wait, Start — the order containerd's client keeps — undoing what was done if a step fails. */
async function launch(client: BerthClient, l: Launch, opts: StartOptions): Promise<ProcessHandle> {
  const fifos = opts.nullIO
    ? undefined
    : await FifoSet.create({
        ...(opts.fifoRoot ? { root: opts.fifoRoot } : {}),
        namespace: client.namespace,
        containerId: l.containerId,
        processId: l.execId ?? l.containerId,
        stdin: !!opts.stdin || l.terminal,
        terminal: l.terminal,
      });
  let io: ProcessIO | undefined;
  let readers: { release(): void } | undefined;
  let created = false;
  try {
    if (fifos && opts.detach) readers = fifos.holdReaders();
    else if (fifos) io = await ProcessIO.attach(fifos, opts.streams ?? {});
    await l.create(fifos);
    created = true;
    const exit = opts.detach ? undefined : l.wait();
    // Until someone waits: an unobserved rejection (the client closed, say) is no crash.
    exit?.catch(() => {});
    const pid = await l.start();
    // Our end of stdin closes (and CloseIO follows) once it started, as with ctr.
    io?.onStdinEnd(l.closeStdin);
    return new ProcessHandle(client, l.containerId, l.execId, pid, l.terminal, () => exit ?? l.wait(), { ...(io ? { io } : {}), ...(fifos ? { fifos } : {}) });
  } catch (err) {
    io?.close();
    if (created) await l.undo().catch(() => {});
    await fifos?.remove().catch(() => {});
    throw err;
  } finally {
    readers?.release();
  }
}

/**
 * Create and start the task of `container` (its rootfs from its snapshot,
 * a terminal when its spec asks for one), with FIFOs for its stdio.
 */
export async function startTask(client: BerthClient, container: Container | string, opts: StartOptions = {}): Promise<ProcessHandle> {
  const req: RequestOptions = opts.signal ? { signal: opts.signal } : {};
  const c = typeof container === 'string' ? await client.containers.get(container, req) : container;
  const spec = containerSpec(c);
  const rootfs = await containerRootfs(client, c, req);
  return launch(
    client,
    {
      containerId: c.id,
      execId: undefined,
      terminal: !!spec.process?.terminal,
      create: async (fifos) => {
        await client.tasks.create(c.id, { ...req, rootfs, ...fifoPaths(fifos) });
      },
      wait: () => client.tasks.wait(c.id),
      start: () => client.tasks.start(c.id, req),
      closeStdin: () => client.tasks.closeIO(c.id),
      undo: () => client.tasks.delete(c.id),
    },
    opts,
  );
}

const fifoPaths = (fifos: FifoSet | undefined) => ({
  stdin: fifos?.stdin ?? '',
  stdout: fifos?.stdout ?? '',
  stderr: fifos?.stderr ?? '',
  terminal: !!fifos?.terminal,
});

export interface ExecOptions extends StartOptions {
  readonly tty?: boolean;
  readonly cwd?: string;
  /** As ctr's `tasks exec --user`: resolved against the container's rootfs. */
  readonly user?: string;
  /** `K=V` added to the container's environment. */
  readonly env?: readonly string[];
}

/**
 * Run `args` as exec process `execId` in the container's task, as
 * `ctr tasks exec`: the container's process spec with these args, terminal,
 * cwd and user. AlreadyExistsError when the exec id is taken.
 */
export async function execProcess(
  client: BerthClient,
  containerId: string,
  execId: string,
  args: readonly string[],
  opts: ExecOptions = {},
): Promise<ProcessHandle> {
  if (args.length === 0) throw new InvalidArgumentError('exec needs a command');
  const req: RequestOptions = opts.signal ? { signal: opts.signal } : {};
  const container = await client.containers.get(containerId, req);
  const spec = containerSpec(container);
  if (opts.user) await withUser(spec, opts.user, rootfsFromMounts(await containerRootfs(client, container, req)));
  const process: RuntimeProcess = { ...(spec.process ?? { user: { uid: 0, gid: 0 }, cwd: '/' }), args: [...args], terminal: !!opts.tty };
  const size = opts.tty ? new ConsoleSession(undefined, opts.streams?.stdout).size() : undefined;
  if (size) process.consoleSize = { height: size.height, width: size.width };
  else delete process.consoleSize;
  if (opts.cwd) process.cwd = opts.cwd;
  if (opts.env?.length) process.env = [...(process.env ?? []), ...opts.env];
  return launch(
    client,
    {
      containerId,
      execId,
      terminal: !!opts.tty,
      create: async (fifos) => {
        await client.tasks.exec(containerId, execId, process, { ...req, ...fifoPaths(fifos) });
      },
      wait: () => client.tasks.wait(containerId, { execId }),
      start: () => client.tasks.start(containerId, { ...req, execId }),
      closeStdin: () => client.tasks.closeIO(containerId, { execId }),
      undo: () => client.tasks.deleteProcess(containerId, execId),
    },
    opts,
  );
}

/** How long an attached client waits for the rest of the output once the process exited. */
const ATTACH_DRAIN_MS = 2000;

/**
 * Attach to a running process's FIFOs (those its task recorded), as
 * `ctr tasks attach`: its output to `streams`, `streams.stdin` to its input.
 * Detaching — or this client dying — leaves the process running.
 */
export async function attachProcess(
  client: BerthClient,
  containerId: string,
  opts: { readonly streams?: ProcessStreams; readonly execId?: string; readonly signal?: AbortSignal } = {},
): Promise<ProcessHandle> {
  const req = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.execId ? { execId: opts.execId } : {}) };
  const exit = client.tasks.wait(containerId, req);
  exit.catch(() => {});
  const p = await client.tasks.get(containerId, req);
  if (p.status === 'stopped') return new ProcessHandle(client, containerId, opts.execId, p.pid, p.terminal, () => exit);
  const io = await ProcessIO.attach({ stdin: p.stdin, stdout: p.stdout, stderr: p.stderr, terminal: p.terminal }, opts.streams ?? {});
  io.onStdinEnd(() => client.tasks.closeIO(containerId, opts.execId ? { execId: opts.execId } : {}));
  return new ProcessHandle(client, containerId, opts.execId, p.pid, p.terminal, () => exit, { io, drainAfterExitMs: ATTACH_DRAIN_MS });
}

/**
 * Delete a container's task, as containerd's client: FailedPreconditionError
 * unless it is stopped (or only created). With `force`, a running task is
 * killed (SIGKILL) and waited for first, as `ctr tasks rm -f`. The FIFOs
 * this client made for its processes (under the default FIFO root) go too.
 */
export async function deleteTask(client: BerthClient, containerId: string, opts: { readonly force?: boolean } = {}): Promise<DeletedProcess> {
  const p = await client.tasks.get(containerId);
  if (p.status !== 'stopped' && p.status !== 'created' && p.status !== 'unknown') {
    if (!opts.force) throw new FailedPreconditionError(`task must be stopped before deletion: ${p.status}`);
    const exit = client.tasks.wait(containerId);
    await client.tasks.kill(containerId, 'SIGKILL', { all: true });
    // A frozen task takes the signal once thawed.
    if (p.status === 'paused' || p.status === 'pausing') await client.tasks.resume(containerId).catch(() => {});
    await exit;
  }
  const deleted = await client.tasks.delete(containerId);
  await removeFifoDir(p).catch(() => {});
  await removeContainerFifos(client.namespace, containerId).catch(() => {});
  return deleted;
}

/** Delete an exited exec process and the FIFOs this client made for it. */
export async function deleteProcess(client: BerthClient, containerId: string, execId: string): Promise<DeletedProcess> {
  const p = await client.tasks.get(containerId, { execId }).catch(() => undefined);
  const deleted = await client.tasks.deleteProcess(containerId, execId);
  if (p) await removeFifoDir(p).catch(() => {});
  return deleted;
}

/**
 * Delete a container as `ctr containers rm`: a stopped task is deleted first
 * (FailedPreconditionError while it runs), then the record, then — unless
 * `keepSnapshot` — its snapshot.
 */
export async function deleteContainer(client: BerthClient, id: string, opts: { readonly keepSnapshot?: boolean } = {}): Promise<void> {
  const task = await client.tasks.get(id).catch((err) => {
    if (isNotFound(err)) return undefined;
    throw err;
  });
  if (task) {
    if (task.status !== 'stopped') throw new FailedPreconditionError(`cannot delete a non stopped container: task ${id} is ${task.status}`);
    await deleteTask(client, id);
  }
  const container = await client.containers.get(id);
  if (!opts.keepSnapshot && container.snapshotKey && container.snapshotter) {
    await new Snapshots(client).remove(container.snapshotter, container.snapshotKey).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
  await client.containers.delete(id);
}

export interface RunOptions extends NewContainerOptions, Omit<StartOptions, 'signal'> {
  /** Delete the task, container and snapshot when it exits (not with `detach`). */
  readonly rm?: boolean;
  /** Forward this process's signals to the container (not with a terminal, whose keys go through). */
  readonly forwardSignals?: boolean;
}

export interface RunResult {
  readonly id: string;
  readonly pid: number;
  /** Undefined when detached. */
  readonly exitStatus?: number;
  readonly exitedAt?: Date;
}

/**
 * `ctr run`: create the container, create and start its task with stdio
 * through FIFOs, then — unless detached — wait for it, delete the task
 * (and with `rm` the container and its snapshot) and report how it exited.
 * With `detach` it returns once started, the FIFOs left for `attach`.
 */
export async function runContainer(client: BerthClient, opts: RunOptions): Promise<RunResult> {
  if (opts.rm && opts.detach) throw new InvalidArgumentError('flags --detach and --rm cannot be specified together');
  // The terminal starts at our size; later changes follow through ResizePty.
  const size = opts.tty && !opts.consoleSize ? new ConsoleSession(undefined, opts.streams?.stdout).size() : undefined;
  const container = await createContainer(client, { ...opts, ...(size ? { consoleSize: size } : {}) });
  // Catch signals from before the task starts: the process may print before Start is even answered, and a
  // signal sent on seeing that output must reach it, not end this process.
  const early: NodeJS.Signals[] = [];
  let target: ProcessHandle | undefined;
  const forwarding =
    opts.forwardSignals && !opts.tty && !opts.detach
      ? forwardSignals(async (signal) => {
          if (target) await target.kill(signal);
          else early.push(signal);
        })
      : undefined;
  try {
    const handle = await startTask(client, container, { ...opts, stdin: !!opts.stdin || !!opts.tty });
    if (opts.detach) {
      handle.detach();
      return { id: container.id, pid: handle.pid };
    }
    target = handle;
    for (const signal of early.splice(0)) await handle.kill(signal).catch(() => {});
    try {
      const status = await handle.waitInForeground(opts.streams ? { streams: opts.streams } : {});
      return { id: container.id, pid: handle.pid, ...status };
    } finally {
      await handle.delete().catch(() => {});
    }
  } finally {
    forwarding?.();
    if (opts.rm && !opts.detach) await deleteContainer(client, container.id).catch(() => {});
  }
}
