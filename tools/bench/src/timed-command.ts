import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface TimedResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Wall-clock milliseconds from spawn to the process's close, by process.hrtime. */
  readonly ms: number;
}

export interface TimedOptions {
  /** A file given as stdin (ctr content ingest reads the blob from it). */
  readonly stdinFile?: string;
  readonly timeoutMs?: number;
}

/** Commands running now, so that an interrupted bench ends them, by PID. */
const running = new Set<ChildProcess>();
/** Set once the bench is interrupted: no command starts after that. */
let refusing = false;

function killRunning(): void {
  for (const child of running) if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
}
// A command must not outlive the bench (a ctr whose daemon is gone waits for it a long time).
process.on('exit', killRunning);

/** SIGKILL every command still running (each by its PID) and refuse new ones; for an interrupted bench. */
export function killRunningCommands(): void {
  refusing = true;
  killRunning();
}

/**
 * Runs a command to completion and times it with process.hrtime; never throws for a
 * non-zero exit (check `code`). Output is kept, but only its last 64 KiB.
 */
export function runTimed(cmd: string, args: readonly string[], opts: TimedOptions = {}): Promise<TimedResult> {
  if (refusing) return Promise.reject(new Error(`not running ${cmd}: the bench is stopping`));
  return new Promise((resolve, reject) => {
    const stdin = opts.stdinFile === undefined ? 'ignore' : openSync(opts.stdinFile, 'r');
    const started = process.hrtime.bigint();
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'] });
    } finally {
      if (typeof stdin === 'number') closeSync(stdin);
    }
    running.add(child);
    let stdout = '';
    let stderr = '';
    const keep = (s: string) => (s.length > 65_536 ? s.slice(-65_536) : s);
    child.stdout?.on('data', (d) => (stdout = keep(stdout + d)));
    child.stderr?.on('data', (d) => (stderr = keep(stderr + d)));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(new Error(`cannot run ${cmd}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, ms });
    });
  });
}

/** The result's time when the command succeeded; otherwise throws with the end of its stderr. */
export function checked(r: TimedResult, what: string): number {
  if (r.code !== 0) {
    const why = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join(' / ');
    throw new Error(`${what} failed (${r.code ?? r.signal}): ${why}`);
  }
  return r.ms;
}

/** runTimed, throwing with the command's stderr when it fails. */
export async function runOk(cmd: string, args: readonly string[], opts: TimedOptions = {}): Promise<TimedResult> {
  const r = await runTimed(cmd, args, opts);
  checked(r, `${cmd} ${args.join(' ')}`);
  return r;
}

/** Whether `tool` is on PATH. */
export async function installed(tool: string): Promise<boolean> {
  const r = await runTimed('sh', ['-c', 'command -v "$1"', 'sh', tool], { timeoutMs: 10_000 }).catch(() => undefined);
  return r?.code === 0;
}
