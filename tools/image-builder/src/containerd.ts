import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CommandResult, removeOnExit, runCommand, startProcess, stopProcess } from './processes.js';

export interface TestContainerd {
  readonly dir: string;
  /** The gRPC socket, for `ctr -a`. */
  readonly address: string;
  readonly namespace: string;
  /** containerd's PID. */
  readonly pid: number;
  /** `ctr -a ADDRESS -n NAMESPACE ...args`; never throws for a non-zero exit. */
  ctr(args: readonly string[], opts?: { timeoutMs?: number }): Promise<CommandResult>;
  logs(): string;
  /** Kills and deletes this namespace's tasks, stops containerd by PID, removes the folder. */
  stop(): Promise<void>;
}

/**
 * A real containerd (Debian's 1.6) on a private root, state and socket in a temporary folder,
 * CRI disabled, for checking images against the reference implementation.
 */
export async function startContainerd(opts: { namespace?: string; startTimeoutMs?: number } = {}): Promise<TestContainerd> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-containerd-'));
  const forget = removeOnExit(dir);
  const address = join(dir, 'containerd.sock');
  const namespace = opts.namespace ?? 'berth-image-builder-test';
  const config = join(dir, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = ${JSON.stringify(join(dir, 'root'))}`,
      `state = ${JSON.stringify(join(dir, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(address)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${address}.ttrpc`)}`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(join(dir, 'opt'))}`,
      '',
    ].join('\n'),
  );
  const child = startProcess('containerd', ['--config', config]);
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));

  const ctr = (args: readonly string[], o: { timeoutMs?: number } = {}) =>
    runCommand('ctr', ['-a', address, '-n', namespace, ...args], { timeoutMs: o.timeoutMs ?? 60_000 });

  const stop = async () => {
    if (child.exitCode === null && existsSync(address)) {
      // Tasks left by a failed test: their shims are this daemon's children in all but name.
      const tasks = await ctr(['tasks', 'ls', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
      for (const id of tasks?.stdout.split('\n').filter(Boolean) ?? []) {
        await ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 }).catch(() => {});
        await ctr(['tasks', 'delete', '-f', id], { timeoutMs: 10_000 }).catch(() => {});
      }
      const containers = await ctr(['containers', 'ls', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
      for (const id of containers?.stdout.split('\n').filter(Boolean) ?? []) {
        await ctr(['containers', 'delete', id], { timeoutMs: 10_000 }).catch(() => {});
      }
    }
    await stopProcess(child);
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
    forget();
  };

  try {
    const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
    for (;;) {
      if (spawnError) throw new Error(`cannot start containerd: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`containerd exited: ${log.trim()}`);
      if (existsSync(address) && (await ctr(['version'], { timeoutMs: 5000 })).code === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, address, namespace, pid: child.pid as number, ctr, logs: () => log, stop };
}

/** Lazily unmounts whatever is still mounted under `dir` (deepest first), so it can be removed. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  const points = mounts
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((p): p is string => !!p && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const p of points) await runCommand('umount', ['-l', p], { timeoutMs: 10_000 }).catch(() => {});
}
