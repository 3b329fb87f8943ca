import { BERTHD_NODE_FLAGS } from '@berth/daemon';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const BERTHD = join(REPO, 'packages/daemon/dist/main.js');
export const BERTH_CLI = join(REPO, 'packages/cli/dist/main.js');

/** Every process this suite started, so a failing test still ends them (by PID, never by name). */
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of started) if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
});

export function tempDir(prefix = 'berth-e2e-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout as bytes, for binary output (`ctr content get`). */
  readonly stdoutBytes: Buffer;
}

export interface RunOptions {
  readonly input?: string | Buffer;
  /** A file to give as stdin instead of `input` (ctr seeks in it to resume an ingest). */
  readonly stdinFile?: string;
  readonly timeout?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly binary?: boolean;
}

/** Run a command to completion; never throws for a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const stdin = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'pipe';
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: [stdin, 'pipe', 'pipe'] });
    if (typeof stdin === 'number') closeSync(stdin);
    started.add(child);
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      started.delete(child);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr, stdoutBytes });
    });
    // A command that exits before reading all its input must not fail the test with EPIPE.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input ?? '');
  });
}

export interface TestDaemon {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly address: string;
  readonly process: ChildProcess;
  /** Everything berthd wrote to stderr so far (its JSON log lines). */
  logs(): string;
  /** SIGTERM (or the given signal) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stop if running and remove the temporary folder. */
  cleanup(): Promise<void>;
}

export interface DaemonOptions {
  /** TOML written to <dir>/config.toml and passed with --config. */
  readonly config?: string;
  readonly args?: readonly string[];
  /** Reuse a folder (root, state, socket) from an earlier daemon. */
  readonly dir?: string;
  /** Another socket than <dir>/berthd.sock. */
  readonly address?: string;
}

/** Start berthd on a private root, state and socket; resolves once it accepts connections. */
export async function startBerthd(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? tempDir();
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const address = opts.address ?? join(dir, 'berthd.sock');
  const args = [...BERTHD_NODE_FLAGS, BERTHD, '--root', root, '--state', state, '--address', address, '--log-level', 'debug'];
  if (opts.config !== undefined) {
    writeFileSync(join(dir, 'config.toml'), opts.config);
    args.push('--config', join(dir, 'config.toml'));
  }
  args.push(...(opts.args ?? []));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    }),
  );
  const daemon: TestDaemon = {
    dir,
    root,
    state,
    address,
    process: child,
    logs: () => stderr,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    cleanup: async () => {
      await daemon.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + 20_000;
  while (!(await accepts(address))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
      throw new StartError(`berthd exited (${child.exitCode ?? child.signalCode}) before serving: ${stderr.trim()}`, stderr, child.exitCode);
    }
    if (Date.now() > deadline) {
      await daemon.stop('SIGKILL');
      throw new Error(`berthd did not serve ${address} within 20 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return daemon;
}

export class StartError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly code: number | null,
  ) {
    super(message);
  }
}

function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Debian's ctr against a test daemon. */
export function ctr(daemon: TestDaemon, args: readonly string[], opts: RunOptions = {}) {
  return run('ctr', ['--address', daemon.address, ...args], opts);
}

/** berth's own CLI against a test daemon. */
export function berth(daemon: TestDaemon, args: readonly string[], opts: RunOptions = {}) {
  return run(process.execPath, [BERTH_CLI, '--address', daemon.address, ...args], opts);
}

/** Start a long-running command (e.g. `ctr events`) and collect its output until stopped. */
export function spawnCollect(cmd: string, args: readonly string[]) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      started.delete(child);
      resolve();
    }),
  );
  return {
    output: () => stdout,
    errors: () => stderr,
    /** Resolves when `pattern` appears on stdout (or rejects after `timeout` ms). */
    waitFor: async (pattern: RegExp, timeout = 10_000) => {
      const deadline = Date.now() + timeout;
      while (!pattern.test(stdout)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; got: ${stdout}${stderr}`);
        if (child.exitCode !== null) throw new Error(`exited before ${pattern}; got: ${stdout}${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
