import { decodeMessage, protoRoot } from '@berth/api/protocol';
import { type AnyValue, DeadlineExceededError, type TaskExit, UnknownError } from '@berth/plugin-api';
import { spawn } from 'node:child_process';
import { encodeAny } from './runtime-options.js';

/** How berthd runs a shim binary (containerd's runtime/v2/shim client.Command). */
export interface ShimCommand {
  readonly binary: string;
  readonly namespace: string;
  readonly id: string;
  readonly bundle: string;
  /** berthd's gRPC socket, passed as -address (the stock shim hashes it into its socket path). */
  readonly grpcAddress: string;
  /** berthd's ttrpc socket: TTRPC_ADDRESS, where the shim publishes events. */
  readonly ttrpcAddress: string;
  /** -publish-binary: what a shim would exec to publish (shims of containerd 1.6 publish over ttrpc instead). */
  readonly publishBinary: string;
  /** BERTH_SHIM_IDLE_MS for berth's shim (other shims ignore it). */
  readonly shimIdleMs?: number;
}

interface Output {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  /** stdout and stderr as they came, interleaved. */
  readonly combined: Buffer;
}

/**
 * After the command exits, wait this long for the rest of its output: a shim
 * whose long-lived child kept the pipes would otherwise hang the daemon.
 */
const DRAIN_MS = 100;

/** A shim's environment: berthd's, with where to publish events (and how long berth's shim lingers). */
export function shimEnvironment(cmd: Pick<ShimCommand, 'ttrpcAddress' | 'shimIdleMs'>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    TTRPC_ADDRESS: cmd.ttrpcAddress,
    ...(cmd.shimIdleMs ? { BERTH_SHIM_IDLE_MS: String(cmd.shimIdleMs) } : {}),
  };
}

function runShim(cmd: ShimCommand, args: readonly string[], stdin: Uint8Array | undefined, timeoutMs: number): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      cmd.binary,
      ['-namespace', cmd.namespace, '-address', cmd.grpcAddress, '-publish-binary', cmd.publishBinary, ...args],
      {
        cwd: cmd.bundle,
        env: shimEnvironment(cmd),
        stdio: ['pipe', 'pipe', 'pipe'],
        // Its own session, as containerd's Setpgid: a signal to berthd's group never reaches shims.
        detached: true,
      },
    );
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    const combined: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => {
      stdout.push(d);
      combined.push(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr.push(d);
      combined.push(d);
    });
    let settled = false;
    let drain: NodeJS.Timeout | undefined;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(drain);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr), combined: Buffer.concat(combined) });
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      const output = Buffer.concat(combined).toString('utf8').trim();
      reject(new DeadlineExceededError(`${cmd.binary} ${args.at(-1)}: no answer within ${timeoutMs} ms${output ? `: ${output}` : ''}`));
    }, timeoutMs);
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new UnknownError(`${cmd.binary}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      drain = setTimeout(() => finish(code, signal), DRAIN_MS);
    });
    child.once('close', (code, signal) => finish(code, signal));
    child.stdin.on('error', () => {}); // a shim that does not read its options
    child.stdin.end(stdin ?? new Uint8Array());
  });
}

const status = (o: Output) => (o.signal ? `signal: ${o.signal}` : `exit status ${o.code}`);

/**
 * `<shim> … -id ID start` in the bundle: the runtime options (an Any) on
 * stdin, the shim's ttrpc address on stdout and stderr together.
 */
export async function startShim(cmd: ShimCommand, options: AnyValue | undefined, timeoutMs: number): Promise<string> {
  const out = await runShim(cmd, ['-id', cmd.id, 'start'], options ? encodeAny(options) : undefined, timeoutMs);
  const text = out.combined.toString('utf8').trim();
  if (out.code !== 0) throw new UnknownError(`${text ? `${text}: ` : ''}${status(out)}`);
  if (!text) throw new UnknownError(`${cmd.binary} start printed no address`);
  return text;
}

/**
 * `<shim> … -id ID -bundle PATH delete`: cleanup after a shim that died
 * (kills what is left, unmounts the rootfs). Prints a DeleteResponse.
 */
export async function deleteShim(cmd: ShimCommand, timeoutMs: number): Promise<{ exit: TaskExit; warnings: string }> {
  const out = await runShim(cmd, ['-id', cmd.id, '-bundle', cmd.bundle, 'delete'], undefined, timeoutMs);
  const warnings = out.stderr.toString('utf8').trim();
  if (out.code !== 0) throw new UnknownError(`${warnings ? `${warnings}: ` : ''}${status(out)}`);
  const res = decodeMessage<{ pid: number; exitStatus: number; exitedAt: { seconds: number; nanos: number } | null }>(
    protoRoot().lookupType('containerd.task.v2.DeleteResponse'),
    out.stdout,
  );
  return { exit: { pid: res.pid, exitStatus: res.exitStatus, exitedAt: dateOf(res.exitedAt) ?? new Date() }, warnings };
}

/** A Timestamp as a Date; undefined for an unset one (Go's zero time or the epoch). */
export function dateOf(ts: { seconds?: number; nanos?: number } | null | undefined): Date | undefined {
  if (!ts?.seconds || ts.seconds <= 0) return undefined;
  return new Date(ts.seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}
