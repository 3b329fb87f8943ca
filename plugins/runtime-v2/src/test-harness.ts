/**
 * Test support (not shipped as API): a real berthd on temporary folders,
 * driven by the real `ctr`, with everything it starts found and ended by
 * PID afterwards.
 */
import { cachedPreset } from '@berth/image-builder';
import { shimLockPath, shimSocketPath } from '@berth/shim';
import { socketAnswers } from '@berth/ttrpc';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BERTHD = fileURLToPath(new URL('../../../packages/daemon/dist/main.js', import.meta.url));
export const STOCK_SHIM = '/usr/bin/containerd-shim-runc-v2';

const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
});

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir && existsSync(join(dir, bin)));
}

/** Why the real-runtime tests cannot run here, or false. */
export function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (runc and the shim run as root)';
  const missing = ['ctr', 'runc', 'tar'].filter((b) => !onPath(b));
  if (!existsSync(STOCK_SHIM)) missing.push(STOCK_SHIM);
  if (!existsSync(BERTHD)) missing.push(`${BERTHD} (build the daemon)`);
  return missing.length > 0 ? `not installed: ${missing.join(', ')}` : false;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run to completion (killed after `timeout`); never throws for a non-zero exit. */
export function run(cmd: string, args: readonly string[], timeout = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running command (ctr events, an attached ctr run) whose output is collected. */
export function spawnCollect(cmd: string, args: readonly string[]) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      started.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    exited,
    output: () => stdout,
    errors: () => stderr,
    async waitFor(pattern: RegExp, timeout = 10_000): Promise<void> {
      for (const deadline = Date.now() + timeout; !pattern.test(stdout); await sleep(50)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; got: ${stdout}${stderr}`);
      }
    },
    async stop(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A busybox root filesystem from the test image preset, unpacked once into `dir`. */
export async function prepareRootfs(dir: string): Promise<string> {
  const image = await cachedPreset('small');
  const layer = image.result.layers[0];
  if (!layer) throw new Error('the small preset has no layer');
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-xzf', join(image.layoutDir, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)), '-C', dir]);
  return dir;
}

export interface Berthd {
  readonly dir: string;
  readonly address: string;
  readonly state: string;
  readonly root: string;
  readonly process: ChildProcess;
  logs(): string;
  /** SIGTERM (or another signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** berthd on `<dir>/root`, `<dir>/state`, `<dir>/berthd.sock`; the same dir again restarts it on the same state. */
export async function startBerthd(dir: string, config: string): Promise<Berthd> {
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const address = join(dir, 'berthd.sock');
  writeFileSync(join(dir, 'config.toml'), config);
  const child = spawn(
    process.execPath,
    [BERTHD, '--root', root, '--state', state, '--address', address, '--config', join(dir, 'config.toml'), '--log-level', 'debug'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  started.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      started.delete(child);
      resolve();
    }),
  );
  for (const deadline = Date.now() + 20_000; !(await socketAnswers(address)); await sleep(50)) {
    if (child.exitCode !== null) throw new Error(`berthd exited (${child.exitCode}) before serving:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`berthd did not serve within 20 s:\n${stderr}`);
    }
  }
  return {
    dir,
    address,
    state,
    root,
    process: child,
    logs: () => stderr,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/** Processes whose command line has all of `words`, by PID (never by name alone). */
export function pidsWith(...words: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (words.every((w) => argv.includes(w))) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Shims serving a namespace, optionally for one id: only shims take `-namespace` (ctr's flag is -n). */
export function shimPids(namespace: string, id?: string): number[] {
  return pidsWith('-namespace', namespace, ...(id ? ['-id', id] : []));
}

/** Running, not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export function kill(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** Where the stock shim puts its socket: /run/containerd/s/sha256(<address>/<ns>/<id>). */
export const stockShimSocket = (address: string, namespace: string, id: string) =>
  `/run/containerd/s/${createHash('sha256').update(join(address, namespace, id)).digest('hex')}`;

/**
 * End everything a test namespace left running: its tasks (through berthd
 * while it serves, then runc), its shims by PID, their sockets, runc's state
 * folder, and what is mounted under the daemon's folder.
 */
export async function cleanupNamespace(namespace: string, daemon: Berthd | undefined, ids: Iterable<string>): Promise<void> {
  if (daemon && daemon.process.exitCode === null && daemon.process.signalCode === null) {
    const ls = await run('ctr', ['--address', daemon.address, '-n', namespace, 'tasks', 'ls', '-q'], 10_000);
    for (const id of ls.stdout.split('\n').filter(Boolean)) {
      await run('ctr', ['--address', daemon.address, '-n', namespace, 'tasks', 'kill', '-s', 'KILL', id], 10_000);
      await run('ctr', ['--address', daemon.address, '-n', namespace, 'tasks', 'rm', '-f', id], 10_000);
    }
  }
  // The stock shim's runc root, and berth's shim's.
  const runcRoots = [`/run/containerd/runc/${namespace}`, `/run/berth/runc/${namespace}`];
  for (const runcRoot of runcRoots.filter((r) => existsSync(r))) {
    for (const id of readdirSync(runcRoot)) await run('runc', ['--root', runcRoot, 'delete', '-f', id], 10_000);
  }
  for (const pid of shimPids(namespace)) kill(pid);
  if (daemon) {
    for (const id of ids) rmSync(stockShimSocket(daemon.address, namespace, id), { force: true });
    // berth's group shim, killed above, leaves its socket and lock file: they go too.
    const groupSocket = shimSocketPath({ address: daemon.address, namespace, group: '' });
    rmSync(groupSocket, { force: true });
    rmSync(shimLockPath(groupSocket), { force: true });
  }
  for (const runcRoot of runcRoots) {
    try {
      rmdirSync(runcRoot);
    } catch {
      // absent, or not ours to empty
    }
  }
  if (daemon) {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => !!m && m.startsWith(`${daemon.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) await run('umount', ['-l', m], 10_000);
  }
}
