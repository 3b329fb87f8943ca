import {
  AlreadyExistsError,
  type AnyValue,
  type CreateTaskOptions,
  errorFromGrpc,
  errorMessage,
  type EventExchange,
  FailedPreconditionError,
  grpcCodeOf,
  isAlreadyExists,
  isNotFound,
  type Logger,
  NotFoundError,
  type RequestContext,
  TaskTopic,
  type TaskExit,
  type TaskManager,
  validateIdentifier,
} from '@berth/plugin-api';
import {
  groupOfSpec,
  runcOptionsFromAny,
  SHIM_MAIN,
  ShimLauncher,
  type ShimOrigin,
  shimSnapshotStatus,
  shimSocketPath,
  socketRefuses,
  startGroupShim,
} from '@berth/shim';
import { ttrpcSocketPath } from '@berth/ttrpc';
import { existsSync, realpathSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { Bundle, BundleFile } from './bundle.js';
import { mergeRuntimeOptions } from './runtime-options.js';
import { BERTH_SHIM, RUNC_V2, type RuntimeResolver } from './runtime-resolver.js';
import { deleteShim, type ShimCommand, shimEnvironment, startShim } from './shim-binary.js';
import { ShimConnection } from './shim-connection.js';
import { ShimLog } from './shim-log.js';
import { ShimTask } from './shim-task.js';

export interface ShimTaskManagerOptions {
  /** `<state>/io.containerd.runtime.v2.task`: bundles. */
  readonly stateRoot: string;
  /** `<root>/io.containerd.runtime.v2.task`: work folders. */
  readonly workRoot: string;
  readonly grpcAddress: string;
  readonly ttrpcAddress: string;
  readonly publishBinary: string;
  readonly resolver: RuntimeResolver;
  /** Options from the config's runtimes table (containerd.runc.v1.Options bytes), by runtime name. */
  readonly configuredOptions?: (runtime: string) => Uint8Array | undefined;
  readonly events: EventExchange;
  readonly log: Logger;
  readonly timeouts?: Partial<ShimTimeouts>;
  /** Where berth's shims listen (tests); default /run/berth/s. */
  readonly berthShimSocketDir?: string;
  /** Passed to berth's shims (BERTH_SHIM_IDLE_MS): how long an empty group shim waits for the next container. */
  readonly shimIdleMs?: number;
  /**
   * Keep a spare berth shim while none of the shims this berthd started
   * lives (ShimLauncher), when berth's own shim is what ctr's default runtime
   * (io.containerd.runc.v2) resolves to: a group's first container then
   * skips Node's start-up.
   */
  readonly spareShim?: boolean;
}

export interface ShimTimeouts {
  /** `<shim> start` printing its address. */
  readonly start: number;
  /** Connecting, and Connect answering. */
  readonly connect: number;
  /** `<shim> delete` after a shim died. */
  readonly cleanup: number;
  /** Shutdown after Delete. */
  readonly shutdown: number;
}

const DEFAULT_TIMEOUTS: ShimTimeouts = { start: 30_000, connect: 10_000, cleanup: 15_000, shutdown: 5_000 };

const EventType = { exit: 'containerd.events.TaskExit', delete: 'containerd.events.TaskDelete' } as const;

const timestamp = (d: Date) => {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1e6 };
};

/** Remove a unix socket file nothing listens on. */
async function removeStaleSocket(address: string): Promise<void> {
  const path = ttrpcSocketPath(address);
  if (!isAbsolute(path)) return;
  if (await socketRefuses(path)) await rm(path, { force: true }).catch(() => {});
}

/** Whether `binary` is the bin of the @berth/shim package this berthd imports (not only a file of that name). */
function isShippedBerthShim(binary: string): boolean {
  if (basename(binary) !== BERTH_SHIM) return false;
  try {
    return realpathSync(binary) === realpathSync(SHIM_MAIN);
  } catch {
    return false;
  }
}

/** Whether ctr's default runtime runs the berth shim this berthd ships (what a spare shim can serve). */
function servesByDefault(resolver: RuntimeResolver): boolean {
  try {
    return isShippedBerthShim(resolver.resolve(RUNC_V2));
  } catch {
    return false;
  }
}

/** The same kind of error with a prefix, as containerd wraps with `%w`. */
function wrap(prefix: string, err: unknown): Error {
  return errorFromGrpc(grpcCodeOf(err), `${prefix}: ${errorMessage(err)}`);
}

function namespaceOf(ctx: RequestContext): string {
  if (!ctx.namespace) throw new FailedPreconditionError('namespace is required');
  return ctx.namespace;
}

/**
 * containerd's runtime v2 TaskManager: a bundle and a shim per task (or a
 * shared shim, when the shim groups tasks), the shim task API over ttrpc,
 * cleanup of shims that die, and reconnection to live shims from the bundles
 * on disk after a restart. Task events come from the shims; berthd publishes
 * /tasks/exit and /tasks/delete only for a task whose shim died.
 */
export class ShimTaskManager implements TaskManager {
  private readonly byKey = new Map<string, ShimTask>();
  private readonly creating = new Set<string>();
  private readonly deleting = new Map<string, Promise<TaskExit>>();
  private readonly connections = new Map<string, Promise<ShimConnection>>();
  private readonly timeouts: ShimTimeouts;
  /**
   * What every `serve` of the shim this berthd ships starts with (its -address, -publish-binary and
   * environment): the same for each group, so a spare can serve any.
   */
  private readonly origin: ShimOrigin;
  /** Starts berth's `serve` processes for the shim this berthd ships, and keeps its spare. */
  private readonly launcher: ShimLauncher;
  private closed = false;

  constructor(private readonly opts: ShimTaskManagerOptions) {
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    const { grpcAddress: address, publishBinary, ttrpcAddress, shimIdleMs } = opts;
    this.origin = { address, publishBinary, env: shimEnvironment({ ttrpcAddress, ...(shimIdleMs ? { shimIdleMs } : {}) }) };
    const spare = opts.spareShim && servesByDefault(opts.resolver);
    this.launcher = new ShimLauncher({
      ...(spare ? { spare: this.origin } : {}),
      log: (level, msg, fields) => opts.log[level](msg, fields),
    });
    // Once, off the start-up path: whether berth's shim starts from its V8 snapshot (and the
    // snapshot's inputs read, so that a group's first container does not wait for that); then the spare.
    setTimeout(() => {
      if (this.closed) return;
      const snapshot = shimSnapshotStatus();
      opts.log.info('berth shim start-up snapshot', snapshot.usable ? { inUse: true } : { inUse: false, reason: snapshot.reason });
      this.launcher.keepSpare();
    }, 0).unref();
  }

  async create(ctx: RequestContext, id: string, opts: CreateTaskOptions): Promise<ShimTask> {
    const namespace = namespaceOf(ctx);
    validateIdentifier('id', id);
    const key = `${namespace}/${id}`;
    if (this.byKey.has(key) || this.creating.has(key)) throw new AlreadyExistsError(`task ${id}: already exists`);
    this.creating.add(key);
    try {
      let binary: string;
      try {
        binary = this.opts.resolver.resolve(opts.runtime);
      } catch (err) {
        throw wrap('failed to start shim: failed to resolve runtime path', err);
      }
      const bundle = await this.newBundle(namespace, id, opts, binary);
      return await this.startTask(namespace, id, bundle, binary, opts);
    } finally {
      this.creating.delete(key);
    }
  }

  get(ctx: RequestContext, id: string): ShimTask | undefined {
    return this.byKey.get(`${namespaceOf(ctx)}/${id}`);
  }

  tasksOf(namespace: string): ShimTask[] {
    return [...this.byKey.values()].filter((t) => t.namespace === namespace);
  }

  tasks(ctx: RequestContext): ShimTask[] {
    return this.tasksOf(namespaceOf(ctx));
  }

  async delete(ctx: RequestContext, id: string): Promise<TaskExit> {
    const namespace = namespaceOf(ctx);
    const key = `${namespace}/${id}`;
    const task = this.byKey.get(key);
    if (!task) throw new NotFoundError(`task ${id} not found`);
    // Concurrent deletes of one task share the first one's outcome.
    let deleting = this.deleting.get(key);
    if (!deleting) {
      deleting = this.deleteTask(ctx, task).finally(() => this.deleting.delete(key));
      this.deleting.set(key, deleting);
    }
    return deleting;
  }

  private async deleteTask(ctx: RequestContext, task: ShimTask): Promise<TaskExit> {
    const key = task.key;
    const lost = task.whenLost();
    if (lost) return this.forget(task, await lost);

    let exit: TaskExit | undefined;
    let notFound: unknown;
    try {
      exit = await task.deleteInit(ctx);
    } catch (err) {
      const nowLost = task.whenLost();
      if (nowLost) return this.forget(task, await nowLost);
      if (!isNotFound(err)) throw wrap('failed to delete task', err);
      notFound = err; // the shim no longer knows it: clean up all the same, then say so
    }
    if (task.whenLost()) return this.forget(task, await (task.whenLost() as Promise<TaskExit>));
    // Out of the shim's care first, so its exit after Shutdown is not taken for a death.
    task.conn?.tasks.delete(key);
    await this.shutdown(task);
    task.closeLog();
    await task.dir.delete().catch((err) => this.opts.log.warn('cannot remove bundle', { bundle: task.bundle, error: errorMessage(err) }));
    // Only now: a create of the same id waits for the bundle to be gone.
    this.forget(task, exit as TaskExit);
    if (notFound || !exit) throw wrap('failed to delete task', notFound);
    return exit;
  }

  /**
   * After a restart: reconnect to every live shim from the bundles on disk;
   * clean up after dead ones with their `delete` (the task stays, STOPPED,
   * with the exit status that reports).
   */
  async load(): Promise<void> {
    const bundles = await Bundle.list(this.opts.stateRoot, this.opts.workRoot);
    await Promise.all(bundles.map((bundle) => this.loadBundle(bundle)));
    for (const connecting of [...this.connections.values()]) {
      const conn = await connecting.catch(() => undefined);
      if (conn) this.release(conn);
    }
    if (bundles.length > 0) {
      const loaded = [...this.byKey.values()];
      this.opts.log.info('tasks loaded from bundles', {
        bundles: bundles.length,
        running: loaded.filter((t) => !t.isLost).length,
        dead: loaded.filter((t) => t.isLost).length,
      });
    }
  }

  /** Leaves shims running (they outlive berthd, as containerd's do); waits for cleanups under way. */
  async close(): Promise<void> {
    this.closed = true;
    this.launcher.close();
    const cleanups = [...this.byKey.values()].map((t) => t.whenLost()).filter((p) => p !== undefined);
    for (const conn of this.connections.values()) conn.then((c) => c.close()).catch(() => {});
    this.connections.clear();
    for (const task of this.byKey.values()) task.closeLog();
    await Promise.allSettled(cleanups);
  }

  private async newBundle(namespace: string, id: string, opts: CreateTaskOptions, binary: string): Promise<Bundle> {
    try {
      return await Bundle.create(this.opts.stateRoot, this.opts.workRoot, namespace, id, opts.spec, binary);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      // A bundle without a task: left by a create that crashed. Nothing runs from it.
      this.opts.log.warn('removing a stale bundle', { namespace, id });
      await new Bundle(this.opts.stateRoot, this.opts.workRoot, namespace, id).delete();
      return Bundle.create(this.opts.stateRoot, this.opts.workRoot, namespace, id, opts.spec, binary);
    }
  }

  private command(namespace: string, id: string, bundle: Bundle, binary: string): ShimCommand {
    return {
      binary,
      namespace,
      id,
      bundle: bundle.path,
      grpcAddress: this.opts.grpcAddress,
      ttrpcAddress: this.opts.ttrpcAddress,
      publishBinary: this.opts.publishBinary,
      ...(this.opts.shimIdleMs ? { shimIdleMs: this.opts.shimIdleMs } : {}),
    };
  }

  private shimLog(namespace: string, id: string, bundle: Bundle, binary: string): ShimLog | undefined {
    try {
      return new ShimLog(bundle.logPath, this.opts.log.child({ namespace, id, shim: basename(binary) }));
    } catch (err) {
      this.opts.log.warn('cannot read the shim log', { namespace, id, error: errorMessage(err) });
      return undefined;
    }
  }

  private async startTask(namespace: string, id: string, bundle: Bundle, binary: string, opts: CreateTaskOptions): Promise<ShimTask> {
    const key = `${namespace}/${id}`;
    const cmd = this.command(namespace, id, bundle, binary);
    const log = this.shimLog(namespace, id, bundle, binary);
    const options = mergeRuntimeOptions(this.opts.configuredOptions?.(opts.runtime), opts.taskOptions ?? opts.runtimeOptions);
    let conn: ShimConnection | undefined;
    let started = false;
    try {
      conn = await this.runningGroupShim(namespace, id, bundle, binary, opts);
      if (!conn) {
        let address: string;
        try {
          address = await this.startShim(cmd, options);
        } catch (err) {
          throw wrap('failed to start shim', err);
        }
        started = true;
        conn = await this.connection(address);
        // Held from now on, so a shim shared with other tasks is not closed under this create. No
        // Connect first, as containerd sends none: `start` started the shim for this id, or
        // reserved the group's running one for it (berth's).
        conn.tasks.add(key);
      }
      let pid: number;
      try {
        const res = await conn.task.unary<{ pid: number }>(
          'Create',
          {
            id,
            bundle: bundle.path,
            rootfs: opts.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: [...m.options] })),
            terminal: opts.io.terminal,
            stdin: opts.io.stdin,
            stdout: opts.io.stdout,
            stderr: opts.io.stderr,
            options: options ? { type_url: options.typeUrl, value: options.value } : null,
          },
          { namespace },
        );
        pid = res.pid;
      } catch (err) {
        throw wrap('failed to create shim task', err);
      }
      const task = new ShimTask(namespace, id, bundle, opts.runtime, binary, pid, opts.io, conn, log);
      if (conn.isLost) throw new FailedPreconditionError(`failed to create shim task: task ${id}: its shim exited`);
      this.byKey.set(key, task);
      return task;
    } catch (err) {
      conn?.tasks.delete(key);
      await this.abandon(namespace, id, cmd, conn, started);
      log?.close();
      await bundle.delete().catch((e) => this.opts.log.warn('cannot remove bundle', { bundle: bundle.path, error: errorMessage(e) }));
      throw err;
    }
  }

  /**
   * berth's shim serves every container of a group from one process: when
   * the group's shim already answers on its socket, talk to it directly
   * instead of exec'ing `start` (a Node process) for each container.
   * Connect reserves the shim for this container, so it does not exit
   * meanwhile; a shim on its way out refuses, and `start` runs as usual.
   */
  private async runningGroupShim(
    namespace: string,
    id: string,
    bundle: Bundle,
    binary: string,
    opts: CreateTaskOptions,
  ): Promise<ShimConnection | undefined> {
    if (basename(binary) !== BERTH_SHIM) return undefined;
    const socket = shimSocketPath(
      { address: this.opts.grpcAddress, namespace, group: groupOfSpec(opts.spec) },
      this.opts.berthShimSocketDir,
    );
    if (!existsSync(socket)) return undefined;
    const key = `${namespace}/${id}`;
    let conn: ShimConnection | undefined;
    try {
      conn = await this.connection(`unix://${socket}`);
      conn.tasks.add(key);
      await conn.task.unary('Connect', { id }, { namespace, timeoutMs: this.timeouts.connect });
      // What `start` would have written: how a restarted berthd finds this shim again.
      await writeFile(join(bundle.path, BundleFile.address), conn.address);
      this.opts.log.debug('using the running group shim', { namespace, id, address: conn.address });
      return conn;
    } catch (err) {
      this.opts.log.debug('group shim not usable, starting one', { namespace, id, socket, error: errorMessage(err) });
      if (conn) {
        conn.tasks.delete(key);
        this.release(conn);
      }
      return undefined;
    }
  }

  /**
   * `<shim> start`; for the berth shim that this berthd ships (the bin of the
   * @berth/shim package it imports), start's own code run here: the same
   * group lock, probe and `serve` process, without starting a Node process
   * for `start` first (about 100 ms of a group's first container). Any other
   * binary, a berth shim installed elsewhere included, runs as a command.
   */
  private startShim(cmd: ShimCommand, options: AnyValue | undefined): Promise<string> {
    if (!isShippedBerthShim(cmd.binary)) return startShim(cmd, options, this.timeouts.start);
    return startGroupShim({
      namespace: cmd.namespace,
      id: cmd.id,
      ...this.origin,
      bundle: cmd.bundle,
      options: runcOptionsFromAny(options),
      launcher: this.launcher,
    });
  }

  /** Undo a create that failed after the shim started: delete in the shim, shut it down, clean up after it. */
  private async abandon(namespace: string, id: string, cmd: ShimCommand, conn: ShimConnection | undefined, started: boolean): Promise<void> {
    if (conn && !conn.isLost) {
      const opts = { namespace, timeoutMs: this.timeouts.shutdown };
      await conn.task.unary('Delete', { id, execId: '' }, opts).catch(() => {});
      await conn.task.unary('Shutdown', { id, now: false }, opts).catch(() => {});
      this.release(conn);
    }
    if (started && (!conn || conn.isLost)) {
      await deleteShim(cmd, this.timeouts.cleanup).catch((err) =>
        this.opts.log.warn('cleanup after a failed shim start failed', { namespace, id, error: errorMessage(err) }),
      );
    }
  }

  /** The connection to a shim address, shared by the tasks of one shim. */
  private async connection(address: string): Promise<ShimConnection> {
    const existing = this.connections.get(address);
    if (existing) {
      const conn = await existing.catch(() => undefined);
      if (conn && !conn.isLost) return conn;
    }
    const connecting = ShimConnection.connect(address, this.timeouts.connect, (conn) => this.onLost(conn));
    this.connections.set(address, connecting);
    try {
      return await connecting;
    } catch (err) {
      if (this.connections.get(address) === connecting) this.connections.delete(address);
      throw err;
    }
  }

  /** Close a connection no task uses any more. */
  private release(conn: ShimConnection): void {
    if (conn.tasks.size > 0) return;
    conn.close();
    void this.connections.get(conn.address)?.then((c) => {
      if (c === conn) this.connections.delete(conn.address);
    });
  }

  private async shutdown(task: ShimTask): Promise<void> {
    const conn = task.conn;
    if (!conn || conn.isLost) return;
    await conn.task
      .unary('Shutdown', { id: task.id, now: false }, { namespace: task.namespace, timeoutMs: this.timeouts.shutdown })
      .catch(() => {}); // the shim exits while answering, or already has
    this.release(conn);
  }

  private forget(task: ShimTask, exit: TaskExit): TaskExit {
    if (this.byKey.get(task.key) === task) this.byKey.delete(task.key);
    return exit;
  }

  /** A shim's connection ended without berthd closing it: every task it served is dead. */
  private onLost(conn: ShimConnection): void {
    void this.connections.get(conn.address)?.then((c) => {
      if (c === conn) this.connections.delete(conn.address);
    });
    if (this.closed) return;
    for (const key of conn.tasks) {
      const task = this.byKey.get(key);
      if (task) void task.markLost(() => this.cleanupDead(task, 'shim disconnected'));
    }
    conn.tasks.clear();
  }

  /**
   * containerd's cleanupAfterDeadShim: `<shim> delete` (kills what is left,
   * unmounts), the bundle removed, /tasks/exit and /tasks/delete published
   * with the status `delete` reported (255 when it could not tell).
   */
  private async cleanupDead(task: ShimTask, why: string): Promise<TaskExit> {
    const { namespace, id } = task;
    this.opts.log.error(`${why}: task stopped, cleaning up after its shim`, { namespace, id, bundle: task.bundle });
    const address = task.conn?.address ?? (await task.dir.address());
    let exit: TaskExit;
    try {
      const res = await deleteShim(this.command(namespace, id, task.dir, task.shimBinary), this.timeouts.cleanup);
      if (res.warnings) this.opts.log.warn('shim delete warnings', { namespace, id, output: res.warnings });
      exit = { ...res.exit, pid: res.exit.pid || task.pid };
    } catch (err) {
      this.opts.log.warn('cleanup after a dead shim failed', { namespace, id, error: errorMessage(err) });
      exit = { pid: task.pid, exitStatus: 255, exitedAt: new Date() };
    }
    task.closeLog();
    await task.dir.delete().catch((err) => this.opts.log.warn('cannot remove bundle', { bundle: task.bundle, error: errorMessage(err) }));
    // A killed shim leaves its socket behind (containerd leaves it too); nothing answers there any more.
    if (address) await removeStaleSocket(address);
    const exitedAt = timestamp(exit.exitedAt);
    await this.publish(namespace, TaskTopic.exit, EventType.exit, { containerId: id, id, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt });
    await this.publish(namespace, TaskTopic.delete, EventType.delete, { containerId: id, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt });
    return exit;
  }

  private async publish(namespace: string, topic: string, typeUrl: string, data: Record<string, unknown>): Promise<void> {
    try {
      await this.opts.events.publish(namespace, topic, { typeUrl, data });
    } catch (err) {
      this.opts.log.warn('cannot publish task event', { namespace, topic, error: errorMessage(err) });
    }
  }

  private async loadBundle(bundle: Bundle): Promise<void> {
    const { namespace, id } = bundle;
    const key = `${namespace}/${id}`;
    if (await bundle.isEmpty()) {
      await bundle.delete().catch(() => {});
      return;
    }
    const [address, binary] = await Promise.all([bundle.address(), bundle.shimBinary()]);
    if (!binary) {
      // Not laid out by berth, or a create that crashed before it got far: nothing to clean up through a shim.
      this.opts.log.warn('removing a bundle without a shim binary', { namespace, id });
      await bundle.delete().catch((err) => this.opts.log.warn('cannot remove bundle', { bundle: bundle.path, error: errorMessage(err) }));
      return;
    }
    const noIO = { stdin: '', stdout: '', stderr: '', terminal: false };
    let conn: ShimConnection | undefined;
    try {
      if (!address) throw new NotFoundError('the shim never wrote its address');
      conn = await this.connection(address);
      conn.tasks.add(key);
      const connected = await conn.task.unary<{ taskPid: number }>('Connect', { id }, { namespace, timeoutMs: this.timeouts.connect });
      const state = await conn.task.unary<{ pid: number; stdin: string; stdout: string; stderr: string; terminal: boolean }>('State', { id, execId: '' }, { namespace, timeoutMs: this.timeouts.connect });
      const io = { stdin: state.stdin ?? '', stdout: state.stdout ?? '', stderr: state.stderr ?? '', terminal: !!state.terminal };
      const log = this.shimLog(namespace, id, bundle, binary);
      const task = new ShimTask(namespace, id, bundle, binary, binary, state.pid || connected.taskPid, io, conn, log);
      if (conn.isLost) throw new Error('the shim went away');
      this.byKey.set(key, task);
      this.opts.log.debug('reconnected to shim', { namespace, id, address });
    } catch (err) {
      conn?.tasks.delete(key); // closed once every bundle loaded, if no task uses it
      const task = new ShimTask(namespace, id, bundle, binary, binary, 0, noIO, undefined, undefined);
      this.byKey.set(key, task);
      await task.markLost(() => this.cleanupDead(task, `shim not answering after restart (${errorMessage(err)})`));
    }
  }
}
