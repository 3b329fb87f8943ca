import { BERTHD_NODE_FLAGS } from '@berth/daemon';
import { startContainerd } from '@berth/image-builder';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { runTimed, type TimedOptions, type TimedResult } from './timed-command.js';

export type EngineName = 'containerd' | 'berth';

/** One engine under test: ctr talks to it through `address`; its data lives under `root`. */
export interface Engine {
  readonly name: EngineName;
  readonly address: string;
  /** Its persistent root (the content store is `<root>/io.containerd.content.v1.content`). */
  readonly root: string;
  readonly pid: number;
  /**
   * Prefix of the namespaces the bench makes on it. containerd's stock runc shim keeps state
   * under fixed paths per namespace (/run/containerd/runc/<ns>), so each engine has its own.
   */
  readonly namespacePrefix: string;
  /** `ctr -a ADDRESS -n NAMESPACE ...args`, timed; never throws for a non-zero exit. */
  ctr(namespace: string, args: readonly string[], opts?: TimedOptions): Promise<TimedResult>;
  /** What the engine logged (the last 64 KiB). */
  logs(): string;
  /** Stops the engine by PID and removes its folders. */
  stop(): Promise<void>;
}

function ctrOn(address: string) {
  return (namespace: string, args: readonly string[], opts?: TimedOptions) =>
    runTimed('ctr', ['-a', address, '-n', namespace, ...args], opts);
}

/** Debian's containerd 1.6 on a private root, state, gRPC and ttrpc socket, CRI disabled (image-builder's harness). */
export async function startContainerdEngine(): Promise<Engine> {
  const c = await startContainerd({ namespace: 'bench-ctd' });
  return {
    name: 'containerd',
    address: c.address,
    root: join(c.dir, 'root'),
    pid: c.pid,
    namespacePrefix: 'bench-ctd',
    ctr: ctrOn(c.address),
    logs: () => c.logs().slice(-65_536),
    stop: () => c.stop(),
  };
}

/** packages/daemon/dist/main.js, found through the @berth/daemon package. */
export function berthdMain(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('@berth/daemon/package.json')), 'dist', 'main.js');
}

export interface BerthdOptions {
  /** The folder for root, state and socket (made if missing; the caller removes it). */
  readonly dir: string;
  /** Write a V8 CPU profile (node --cpu-prof) into this folder when berthd exits. */
  readonly cpuProfileDir?: string;
  readonly startTimeoutMs?: number;
}

/** berthd on a private root, state and socket under `dir`, as e2e/src/harness.ts starts it. */
export async function startBerthdEngine(opts: BerthdOptions): Promise<Engine> {
  const root = join(opts.dir, 'root');
  const state = join(opts.dir, 'state');
  const address = join(opts.dir, 'berthd.sock');
  await mkdir(opts.dir, { recursive: true });
  const nodeArgs = [...BERTHD_NODE_FLAGS, ...(opts.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfileDir] : [])];
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, berthdMain(), '--root', root, '--state', state, '--address', address, '--log-level', 'info'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  const keep = (d: unknown) => {
    log = (log + String(d)).slice(-65_536);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  // Should the bench itself die, berthd must not outlive it.
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  };
  process.on('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      // SIGTERM: berthd closes its plugins and exits, which is also when --cpu-prof writes the profile.
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(killOnExit, 15_000);
      await exited;
      clearTimeout(timer);
    }
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
  while (!(await accepts(address))) {
    const failure =
      spawnError?.message ??
      (child.exitCode !== null || child.signalCode !== null ? `exited (${child.exitCode ?? child.signalCode})` : undefined) ??
      (Date.now() > deadline ? `did not serve ${address} in time` : undefined);
    if (failure) {
      await stop();
      throw new Error(`berthd ${failure}: ${log.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'berth',
    address,
    root,
    pid: child.pid as number,
    namespacePrefix: 'bench-berth',
    ctr: ctrOn(address),
    logs: () => log,
    stop,
  };
}

function accepts(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Blobs and ingests in the engine's content store (both engines use containerd's layout). */
export async function contentFiles(engine: Engine): Promise<string[]> {
  const store = join(engine.root, 'io.containerd.content.v1.content');
  const out: string[] = [];
  for (const sub of ['blobs/sha256', 'ingest']) {
    const names = await readdir(join(store, sub)).catch(() => [] as string[]);
    out.push(...names.map((n) => `${sub}/${n}`));
  }
  return out;
}
