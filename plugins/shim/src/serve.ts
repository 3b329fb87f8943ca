import { errorMessage } from '@berth/plugin-api';
import {
  flock,
  LOCK_EX,
  LOCK_NB,
  prepareIdleTrim,
  prepareNativeCalls,
  returnFreedMemoryPromptly,
  setChildSubreaper,
  trimMemoryNow,
  trimMemoryWhenIdle,
} from '@berth/sys';
import { TtrpcServer } from '@berth/ttrpc';
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import type { ContainerContext } from './container.js';
import { EventPublisher } from './event-publisher.js';
import { REPORT_FD_ENV, type ShimFlags } from './flags.js';
import { OomWatcher } from './oom-watcher.js';
import { commandLine, setCommandLine } from './proc-title.js';
import { Reaper } from './reaper.js';
import { ShimLogger, ShimLogSink } from './shim-log.js';
import { SHIM_INFO_SERVICE, shimProtoRoot, TASK_SERVICE } from './shim-proto.js';
import { shimLockPath } from './socket-address.js';
import { SHIM_VERSION, TaskService } from './task-service.js';

/** Where console sockets go: runc connects to them, so their path must stay short. */
const CONSOLE_DIR = '/run/berth/pty';
/** How long an idle shim waits after its last Delete for the Shutdown that usually follows. */
const IDLE_GRACE_MS = 1000;

/**
 * The descriptor `start` reads the shim's one-line report from, named by
 * `start` in the environment (and taken out of it, so runc does not inherit
 * it). Started by hand, descriptor 3 is one of libuv's own (epoll, signals).
 * Read when serve starts, never when the module loads: the start-up snapshot
 * (snapshot-entry.ts) loads every module at build time, in another environment.
 */
function takeReportFd(): number | undefined {
  const fd = Number(process.env[REPORT_FD_ENV]);
  delete process.env[REPORT_FD_ENV];
  return Number.isInteger(fd) && fd > 2 ? fd : undefined;
}

/** The one-line report to `start` (`ok` or `error: …`) on `fd`; false when no `start` listens. */
function report(fd: number | undefined, line: string): boolean {
  if (fd === undefined) return false;
  try {
    writeSync(fd, `${line}\n`);
  } catch {}
  try {
    closeSync(fd);
  } catch {}
  return true;
}

/** One line from the blocking descriptor `fd`, without its newline; undefined at end-of-file. */
function readLineBlocking(fd: number): string | undefined {
  const buf = Buffer.alloc(4096);
  let text = '';
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EINTR' && code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5); // a non-blocking descriptor after all
      continue;
    }
    if (n === 0) return undefined;
    text += buf.toString('utf8', 0, n);
    const nl = text.indexOf('\n');
    if (nl !== -1) return text.slice(0, nl);
  }
}

/**
 * A spare (`serve -spare`, kept by berthd's ShimLauncher): does the slow
 * part of a shim's start now (koffi, the subreaper), reports `ready`, then
 * waits, blocked, for its group: one line of JSON, `{namespace, id, socket,
 * group, debug}`. Its command line then shows the flags a shim started for
 * that group has (`-namespace NS … -id ID -socket S -group G serve`).
 * Undefined at end-of-file: the launcher is gone, and the spare leaves.
 */
function waitAsSpare(flags: ShimFlags, fd: number | undefined): ShimFlags | undefined {
  if (fd === undefined) throw new Error("-spare needs its launcher's descriptor");
  setChildSubreaper();
  prepareNativeCalls();
  returnFreedMemoryPromptly();
  prepareIdleTrim(); // trimming itself starts with the work: the wait below would count as a busy spell
  // Node loads some built-ins on first use: net.Server#listen node:cluster (some 4 ms here), the idle
  // trim's eventLoopUtilization node:perf_hooks (3 ms). Loaded now, not after the assignment.
  process.getBuiltinModule('node:cluster');
  performance.eventLoopUtilization();
  // What the snapshot's deserialisation and all of the above left, collected and given back before
  // the wait: not in the middle of the first container's start.
  trimMemoryNow();
  writeSync(fd, 'ready\n');
  const line = readLineBlocking(fd);
  if (line === undefined) return undefined;
  const a = JSON.parse(line) as Partial<Record<'namespace' | 'id' | 'socket' | 'group', unknown>> & { debug?: unknown };
  const text = (v: unknown) => (typeof v === 'string' ? v : '');
  const assigned: ShimFlags = {
    ...flags,
    spare: false,
    namespace: text(a.namespace),
    id: text(a.id),
    socket: text(a.socket),
    group: text(a.group),
    debug: a.debug === true,
  };
  if (!assigned.namespace || !assigned.id || !assigned.socket) throw new Error(`a spare needs a namespace, an id and a socket: ${line}`);
  const argv = commandLine();
  const at = argv.indexOf('-address');
  setCommandLine([
    ...argv.slice(0, at === -1 ? argv.length : at),
    '-namespace',
    assigned.namespace,
    '-address',
    assigned.address,
    '-publish-binary',
    assigned.publishBinary,
    '-id',
    assigned.id,
    '-socket',
    assigned.socket,
    '-group',
    assigned.group,
    ...(assigned.debug ? ['-debug'] : []),
    'serve',
  ]);
  return assigned;
}

/**
 * Takes the group lock for good (the process is about to exit) and unlinks
 * its file, so a `start` that waited on it sees a stale file and takes the
 * new one. False while a `start` holds it.
 */
function lockAndUnlink(path: string): boolean {
  for (;;) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      flock(fd, LOCK_EX | LOCK_NB);
    } catch {
      closeSync(fd);
      return false;
    }
    const held = fstatSync(fd);
    let current: { ino: number; dev: number } | undefined;
    try {
      current = statSync(path);
    } catch {}
    if (current && current.ino === held.ino && current.dev === held.dev) {
      rmSync(path, { force: true });
      return true; // the descriptor stays open, and the lock with it, until exit
    }
    closeSync(fd);
  }
}

/**
 * The long-lived shim: a child subreaper serving containerd.task.v2.Task
 * (and berth.shim.v1.Shim) on the group's socket, until its last container
 * is deleted. With `-spare`, it first waits for its group (waitAsSpare).
 */
export async function serve(given: ShimFlags): Promise<void> {
  const reportFd = takeReportFd();
  let flags = given;
  if (flags.spare) {
    try {
      const assigned = waitAsSpare(flags, reportFd);
      if (!assigned) process.exit(0);
      flags = assigned;
    } catch (err) {
      if (!report(reportFd, `error: ${errorMessage(err)}`)) process.stderr.write(`containerd-shim-berth-v1 serve: ${errorMessage(err)}\n`);
      process.exit(1);
    }
  }
  // Set by berthd (BERTH_SHIM_IDLE_MS): an empty shim stays this long, Shutdown or not, so the next
  // container of its group starts without a new Node process. Unset (containerd), the shim leaves as
  // the stock one does.
  const idleLingerMs = Number(process.env.BERTH_SHIM_IDLE_MS ?? 0) || 0;
  const sink = new ShimLogSink();
  const log = new ShimLogger(sink, flags.debug ? 'debug' : 'info', { namespace: flags.namespace });
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack ?? errorMessage(err) }));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: errorMessage(err) }));

  let ttrpc: TtrpcServer | undefined;
  try {
    if (!flags.socket) throw new Error('serve needs -socket');
    if (!flags.namespace) throw new Error('shim namespace cannot be empty');
    setChildSubreaper();
    const reaper = new Reaper(log);
    reaper.start();
    const publisher = new EventPublisher(process.env.TTRPC_ADDRESS || undefined, log);
    const oom = new OomWatcher(log);
    const namespace = flags.namespace;
    const ctx: ContainerContext = {
      namespace,
      reaper,
      oom,
      log,
      consoleDir: CONSOLE_DIR,
      publish: (topic, typeName, event) => publisher.publish(namespace, topic, typeName, event),
    };
    let exiting = false;
    let graceTimer: NodeJS.Timeout | undefined;

    const exitNow = async (code: number) => {
      exiting = true;
      service.markClosing();
      await ttrpc?.close();
      await publisher.drain(2000);
      publisher.close();
      oom.close();
      process.exit(code);
    };
    /**
     * While an empty shim lingers for berthd, it leaves as soon as berthd's
     * ttrpc socket is gone (berthd stopped): nobody will bring it work.
     */
    const daemonSocket = (process.env.TTRPC_ADDRESS ?? '').replace(/^unix:\/\//, '');
    let watching: NodeJS.Timeout | undefined;
    const watchDaemon = () => {
      if (watching || !daemonSocket) return;
      watching = setInterval(() => {
        if (!service.idle) {
          clearInterval(watching);
          watching = undefined;
        } else if (!existsSync(daemonSocket)) {
          clearInterval(watching);
          watching = undefined;
          clearTimeout(graceTimer);
          exitIfIdle();
        }
      }, 250);
    };
    /** Exits if nothing holds the shim, once no `start` holds the group lock. */
    const exitIfIdle = () => {
      graceTimer = undefined;
      if (exiting || !service.idle) return;
      if (!lockAndUnlink(shimLockPath(flags.socket))) {
        setTimeout(exitIfIdle, 50); // a `start` is choosing a shim: let it finish
        return;
      }
      log.info('shim exiting: no containers left');
      void exitNow(0);
    };

    const service: TaskService = new TaskService(ctx, {
      idle(reason) {
        if (reason === 'shutdown' && idleLingerMs === 0) setImmediate(exitIfIdle);
        else {
          clearTimeout(graceTimer);
          graceTimer = setTimeout(exitIfIdle, Math.max(IDLE_GRACE_MS, idleLingerMs));
          if (idleLingerMs > 0) watchDaemon();
        }
      },
      containerAdded: (id, bundle) => sink.addContainer(id, bundle),
      containerRemoved: (id) => sink.removeContainer(id),
    });
    service.reserve(flags.id);

    ttrpc = new TtrpcServer({ log });
    ttrpc.register(shimProtoRoot(), TASK_SERVICE, service);
    ttrpc.register(shimProtoRoot(), SHIM_INFO_SERVICE, {
      info: async (r: { reserveId: string }) => {
        if (r.reserveId) service.reserve(r.reserveId);
        return {
          shimPid: process.pid,
          namespace,
          group: flags.group,
          address: flags.address,
          containers: service.containerIds,
          version: SHIM_VERSION,
          socket: flags.socket,
        };
      },
    });
    await ttrpc.listen(flags.socket);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.on(sig, () => {
        log.warn(`shim exiting on ${sig}`, { containers: service.containerIds.join(',') });
        lockAndUnlink(shimLockPath(flags.socket)); // tidy when no `start` holds it; harmless otherwise
        void exitNow(0);
      });
    }
    // One shim serves a whole group for a long time: give back what bursts of work leave.
    returnFreedMemoryPromptly();
    trimMemoryWhenIdle();
    report(reportFd, 'ok');
  } catch (err) {
    if (!report(reportFd, `error: ${errorMessage(err)}`)) process.stderr.write(`containerd-shim-berth-v1 serve: ${errorMessage(err)}\n`);
    await ttrpc?.close();
    process.exit(1);
  }
}
