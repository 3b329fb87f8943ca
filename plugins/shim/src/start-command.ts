import { flock, LOCK_EX, LOCK_NB } from '@berth/sys';
import { spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { REPORT_FD_ENV, type ShimFlags } from './flags.js';
import { type RuncOptions, runcOptionsFromAnyBytes } from './runc-options.js';
import { SNAPSHOT_BLOB, snapshotStatus } from './snapshot.js';
import { groupOfSpec, SHIM_SOCKET_DIR, shimLockPath, shimSocketPath } from './socket-address.js';
import { reserveShim } from './ttrpc-probe.js';

const LOCK_TIMEOUT_MS = 20_000;
/** `serve`'s descriptor for its ready report: the pipe after stdin, stdout and stderr. */
const REPORT_FD = 3;
const READY_TIMEOUT_MS = 20_000;

/** The shim's entry point (the `containerd-shim-berth-v1` bin): what `start` runs `serve` from. */
export const SHIM_MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/**
 * V8 settings for the long-lived shim, which mostly waits: a small young
 * generation, and lite mode (no optimising compilers, lazy feedback), which
 * saves about 8 MiB of resident memory; the copying of stdio happens in
 * libuv either way.
 */
export const SHIM_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=256', '--lite-mode'];

/** What starting a group shim needs: start's flags and stdin, or the same from berthd in-process. */
export interface StartRequest {
  readonly namespace: string;
  readonly id: string;
  /** The daemon's gRPC address (`-address`). */
  readonly address: string;
  readonly publishBinary: string;
  /** The bundle directory holding config.json; `address` is written there. */
  readonly bundle: string;
  readonly debug?: boolean;
  readonly options: RuncOptions;
  /** The shim's environment (TTRPC_ADDRESS, BERTH_SHIM_IDLE_MS); this process's when absent. */
  readonly env?: NodeJS.ProcessEnv;
}

/** `start`: {@link startGroupShim} with start's flags and its stdin (the runtime options as an Any). */
export function startCommand(flags: ShimFlags, stdin: Buffer): Promise<string> {
  return startGroupShim({
    namespace: flags.namespace,
    id: flags.id,
    address: flags.address,
    publishBinary: flags.publishBinary,
    bundle: flags.bundle || process.cwd(),
    debug: flags.debug,
    options: runcOptionsFromAnyBytes(stdin),
  });
}

/**
 * Finds the shim of this container's group or starts one, writes
 * `<bundle>/address`, and returns the address. The group lock is held from
 * the probe until a new shim listens, and a shim takes the same lock before
 * it exits, so this never picks a shim on its way out. `start` runs it in its
 * own process; berthd calls it directly for the shim it ships with (one Node
 * start-up fewer on a group's first container).
 */
export async function startGroupShim(req: StartRequest): Promise<string> {
  if (!req.namespace) throw new Error('shim namespace cannot be empty');
  if (!req.id) throw new Error('shim id cannot be empty');
  const spec = JSON.parse(readFileSync(join(req.bundle, 'config.json'), 'utf8')) as unknown;
  const group = groupOfSpec(spec);
  const socket = shimSocketPath({ address: req.address, namespace: req.namespace, group });
  mkdirSync(SHIM_SOCKET_DIR, { recursive: true, mode: 0o711 });

  const lock = await lockGroup(shimLockPath(socket), LOCK_TIMEOUT_MS);
  try {
    if (!(await reserveShim(socket, req.id))) {
      let pid: number | undefined;
      try {
        pid = await spawnShim(req, socket, group);
      } catch (err) {
        // A shim that came up outside the lock serves the group as well.
        if (!(await reserveShim(socket, req.id))) throw err;
      }
      if (pid !== undefined) {
        if (req.options.shimCgroup) joinCgroup(pid, req.options.shimCgroup);
        adjustOomScore(pid);
      }
    }
  } finally {
    closeSync(lock); // releases the lock
  }
  const address = `unix://${socket}`;
  writeFileSync(join(req.bundle, 'address'), address);
  return address;
}

/**
 * Takes the group's lock file. An exiting shim unlinks the file while it
 * holds it, so a lock won on a file no longer at the path is given up and
 * taken again on the new file.
 */
async function lockGroup(path: string, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    try {
      for (;; await sleep(5)) {
        try {
          flock(fd, LOCK_EX | LOCK_NB);
          break;
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code !== 'EWOULDBLOCK' && code !== 'EAGAIN') throw err;
          if (Date.now() > deadline) throw new Error(`timed out waiting for the shim group lock after ${ms} ms`);
        }
      }
      if (sameFile(fd, path)) return fd;
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    closeSync(fd);
  }
}

function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * Whether `serve` starts from the V8 start-up snapshot here, or why not. The
 * first call reads the snapshot's inputs to compare them with the build (some
 * 8 ms); later ones only stat them. berthd calls it at start-up, so a group's
 * first container does not pay that.
 */
export function shimSnapshotStatus(): { readonly usable: boolean; readonly reason: string } {
  return snapshotStatus(SHIM_NODE_FLAGS);
}

/**
 * Starts `serve` detached (own session, stdio on /dev/null: containerd reads
 * start's output until EOF, so nothing of it may stay open in the shim) and
 * waits for its one-line report on descriptor 3.
 */
async function spawnShim(req: StartRequest, socket: string, group: string): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...(req.env ?? process.env), [REPORT_FD_ENV]: String(REPORT_FD) };
  // The shim makes no TLS connection, and node parses every certificate of NODE_EXTRA_CA_CERTS
  // (and its whole root store with them) before it runs a line: 40 of 60 ms of start-up here.
  delete env.NODE_EXTRA_CA_CERTS;
  // From the start-up snapshot when it was built for this node and this code; from main.js
  // otherwise, and when NODE_OPTIONS is set (node refuses a snapshot under other V8 flags).
  const entry = !env.NODE_OPTIONS && shimSnapshotStatus().usable ? ['--snapshot-blob', SNAPSHOT_BLOB, '--'] : [SHIM_MAIN];
  const args = [
    ...SHIM_NODE_FLAGS,
    ...entry,
    '-namespace',
    req.namespace,
    '-address',
    req.address,
    '-publish-binary',
    req.publishBinary,
    '-id',
    req.id,
    '-socket',
    socket,
    '-group',
    group,
    ...(req.debug ? ['-debug'] : []),
    'serve',
  ];
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    cwd: '/',
    env,
  });
  const report = child.stdio[REPORT_FD] as NodeJS.ReadableStream & { destroy(): void };
  const line = await new Promise<string>((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(`error: the shim did not report in ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    report.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\n')) {
        clearTimeout(timer);
        resolve(text.split('\n')[0] as string);
      }
    });
    report.on('error', () => {});
    report.on('end', () => {
      clearTimeout(timer);
      resolve(text.split('\n')[0] || `error: the shim exited (${child.exitCode ?? child.signalCode}) before listening`);
    });
  });
  report.destroy();
  child.unref();
  if (line !== 'ok') {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw new Error(`cannot start the shim: ${line.replace(/^error: /, '')}`);
  }
  return child.pid as number;
}

/** Puts the shim in ShimCgroup, on every v1 hierarchy that has it, or the v2 one. */
function joinCgroup(pid: number, cgroup: string): void {
  const root = '/sys/fs/cgroup';
  const targets = existsSync(join(root, 'cgroup.controllers'))
    ? [join(root, cgroup, 'cgroup.procs')]
    : readdirSync(root).map((h) => join(root, h, cgroup, 'cgroup.procs'));
  let joined = false;
  for (const t of targets) {
    if (!existsSync(t)) continue;
    writeFileSync(t, String(pid));
    joined = true;
  }
  if (!joined) throw new Error(`ShimCgroup ${cgroup} does not exist`);
}

/** One above the caller's (containerd's) score, as the stock shim sets it: the shim is killed before the daemon. */
function adjustOomScore(pid: number): void {
  try {
    const own = Number(readFileSync('/proc/self/oom_score_adj', 'utf8').trim());
    writeFileSync(`/proc/${pid}/oom_score_adj`, String(Math.min(1000, own + 1)));
  } catch {}
}
