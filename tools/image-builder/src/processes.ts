import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';

export interface CommandResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Every process started here and still running, so an exiting test process ends them (by PID). */
const running = new Set<ChildProcess>();
/** Temporary folders that a crashing test process should still remove. */
const temporary = new Set<string>();
process.on('exit', () => {
  for (const child of running) if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  for (const dir of temporary) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Best effort: the process is exiting anyway.
    }
  }
});

/** Removes `dir` when this process exits, if nothing removed it before; returns a function to forget it. */
export function removeOnExit(dir: string): () => void {
  temporary.add(dir);
  return () => temporary.delete(dir);
}

/** Starts a long-running process, tracked so that it is killed (by PID) if this process exits. */
export function startProcess(cmd: string, args: readonly string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  child.on('error', () => running.delete(child));
  return child;
}

/** SIGTERM by PID, then SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** Runs a command to completion; never throws for a non-zero exit (check `code`). */
export function runCommand(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const stdin = opts.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: [stdin, 'pipe', 'pipe'] });
    running.add(child);
    // A command that exits without reading all its input is judged by its exit code, not EPIPE.
    child.stdin?.on('error', () => {});
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin?.end(opts.input);
  });
}

/** runCommand, throwing with the command's stderr when it fails. */
export async function runChecked(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<string> {
  const r = await runCommand(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r.stdout;
}

/** The path of `name` on PATH, or undefined when it is not installed. */
export async function which(name: string): Promise<string | undefined> {
  const r = await runCommand('sh', ['-c', 'command -v "$1"', 'sh', name]).catch(() => undefined);
  return r?.code === 0 ? r.stdout.trim() : undefined;
}

/** Whether a process with this pid exists (signal 0; EPERM means it does, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
