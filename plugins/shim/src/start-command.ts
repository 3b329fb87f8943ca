import { flock, LOCK_EX, LOCK_NB } from '@berth/sys';
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
import type { ShimFlags } from './flags.js';
import { ShimLauncher } from './launcher.js';
import { type RuncOptions, runcOptionsFromAnyBytes } from './runc-options.js';
import { groupOfSpec, SHIM_SOCKET_DIR, shimLockPath, shimSocketPath } from './socket-address.js';
import { reserveShim } from './ttrpc-probe.js';

const LOCK_TIMEOUT_MS = 20_000;

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
  /** What starts `serve` (berthd's keeps a spare); a plain one when absent. */
  readonly launcher?: ShimLauncher;
}

/** For `start` in its own process, which keeps no spare: it exits once the shim listens. */
const plainLauncher = new ShimLauncher();

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
        pid = await (req.launcher ?? plainLauncher).launch(
          { address: req.address, publishBinary: req.publishBinary, ...(req.env ? { env: req.env } : {}) },
          { namespace: req.namespace, id: req.id, socket, group, ...(req.debug ? { debug: true } : {}) },
        );
      } catch (err) {
        // A shim that came up outside the lock serves the group as well.
        if (!(await reserveShim(socket, req.id))) throw err;
      }
      if (pid !== undefined && req.options.shimCgroup) joinCgroup(pid, req.options.shimCgroup);
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
