import { spawnSync } from 'node:child_process';
import { closeSync, constants, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ShimFlags } from './flags.js';
import { DEFAULT_RUNC_ROOT, shimLockPath } from './socket-address.js';
import { shimContainers, socketRefuses } from './ttrpc-probe.js';
import { encodeDeleteResponse } from './wire.js';

/** What Container.create records in the bundle (mirrors BundleRuntime; kept here so `delete` loads little). */
interface BundleRuntime {
  readonly binary: string;
  readonly root: string;
  readonly systemdCgroup: boolean;
}

/**
 * The socket of a group shim that is gone (connecting is refused, not merely
 * slow), and its lock file, are removed under the group's lock; a `start`
 * holding that lock is bringing up a new shim there, and both are left to it.
 * A shim that exits removes them itself; one that was killed cannot, and
 * without this they stayed in /run/berth/s until its group started again.
 */
async function removeDeadShimSocket(socket: string): Promise<void> {
  if (!(await socketRefuses(socket))) return;
  const { flock, LOCK_EX, LOCK_NB } = await import('@berth/sys');
  const lock = shimLockPath(socket);
  let fd: number;
  try {
    fd = openSync(lock, constants.O_RDWR | constants.O_CREAT, 0o600);
  } catch {
    return;
  }
  try {
    flock(fd, LOCK_EX | LOCK_NB);
    // Asked again under the lock: a `start` that just finished may have a new shim listening there.
    if (await socketRefuses(socket)) {
      rmSync(socket, { force: true });
      rmSync(lock, { force: true });
    }
  } catch {
    // Held by a `start`: its socket now.
  } finally {
    closeSync(fd);
  }
}

/** Whether something is mounted on `path` (mountinfo escapes spaces and the like as octal). */
function mounted(path: string): boolean {
  try {
    const escaped = path.replace(/[ \t\n\\]/g, (ch) => `\\${ch.charCodeAt(0).toString(8).padStart(3, '0')}`);
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[4] === escaped);
  } catch {
    return false;
  }
}

/**
 * `delete`: containerd's cleanup after a shim went away (and, in 1.6, after
 * every task delete). Forces runc's container away, unmounts the rootfs and
 * answers a DeleteResponse with status 137, as the stock shim does. A
 * container that a live shim of its group still serves is left alone.
 * Returns the bytes to print and any warnings for stderr.
 */
export async function deleteCommand(flags: ShimFlags): Promise<{ response: Buffer; warnings: string[] }> {
  const bundle = flags.bundle || process.cwd();
  const id = flags.id;
  const warnings: string[] = [];
  let runtime: BundleRuntime = { binary: 'runc', root: join(DEFAULT_RUNC_ROOT, flags.namespace), systemdCgroup: false };
  try {
    runtime = JSON.parse(readFileSync(join(bundle, 'berth-runtime.json'), 'utf8')) as BundleRuntime;
  } catch {}

  let served = false;
  try {
    const socket = readFileSync(join(bundle, 'address'), 'utf8').trim().replace(/^unix:\/\//, '');
    if (existsSync(socket)) {
      const containers = await shimContainers(socket);
      served = containers?.includes(id) ?? false;
      if (containers === undefined) await removeDeadShimSocket(socket);
    }
  } catch {}

  if (served) {
    warnings.push(`container ${id} is still served by its shim: not cleaned up`);
  } else {
    // runc keeps a container's state in <root>/<id>; without it there is nothing to delete.
    if (existsSync(join(runtime.root, id))) {
      const args = ['--root', runtime.root, '--log', join(bundle, 'log.json'), '--log-format', 'json'];
      if (runtime.systemdCgroup) args.push('--systemd-cgroup');
      const r = spawnSync(runtime.binary, [...args, 'delete', '--force', id], { encoding: 'utf8', timeout: 30_000 });
      if (r.status !== 0) warnings.push(`failed to remove runc container: ${(r.stderr || r.error?.message || '').trim()}`);
    }
    const rootfs = join(bundle, 'rootfs');
    if (mounted(rootfs)) {
      // Loaded only when needed: this command runs after every task delete under containerd 1.6.
      const { unmountAll } = await import('@berth/sys');
      try {
        unmountAll(rootfs);
      } catch (err) {
        warnings.push(`failed to cleanup rootfs mount: ${(err as Error).message}`);
      }
    }
  }
  let pid = 0;
  try {
    pid = Number(readFileSync(join(bundle, 'init.pid'), 'utf8').trim()) || 0;
  } catch {}
  return { response: encodeDeleteResponse({ pid, exitStatus: 128 + 9, exitedAt: new Date() }), warnings };
}
