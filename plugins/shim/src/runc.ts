import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import type { CommandResult, Reaper, RunOptions } from './reaper.js';

export interface RuncConfig {
  /** runc, crun, or another OCI runtime with runc's command line. */
  readonly binary: string;
  /** The runtime's state root for this namespace (`--root`). */
  readonly root: string;
  readonly systemdCgroup: boolean;
}

/** A failed runtime command: `message` reads as the stock shim's (`OCI runtime create failed: …`). */
export class RuncError extends Error {
  constructor(
    message: string,
    readonly result: CommandResult,
  ) {
    super(message);
    this.name = 'RuncError';
  }
}

/**
 * The runc command line for one container (`--root`, `--log <bundle>/log.json
 * --log-format json`, as the stock shim passes them), run through the shim's
 * reaper, which collects each command's exit.
 */
export class Runc {
  constructor(
    readonly config: RuncConfig,
    private readonly logFile: string,
    private readonly reaper: Reaper,
  ) {}

  async create(
    id: string,
    bundle: string,
    opts: { pidFile: string; consoleSocket?: string; noPivot: boolean; noNewKeyring: boolean; stdio: RunOptions['stdio'] },
  ): Promise<void> {
    const args = ['create', '--bundle', bundle, '--pid-file', opts.pidFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    if (opts.noPivot) args.push('--no-pivot');
    if (opts.noNewKeyring) args.push('--no-new-keyring');
    args.push(id);
    await this.check('OCI runtime create failed', args, { stdio: opts.stdio, cwd: bundle });
  }

  async start(id: string): Promise<void> {
    await this.check('OCI runtime start failed', ['start', id]);
  }

  async exec(id: string, opts: { processFile: string; pidFile: string; consoleSocket?: string; stdio: RunOptions['stdio'] }): Promise<void> {
    const args = ['exec', '--process', opts.processFile, '--detach', '--pid-file', opts.pidFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    args.push(id);
    await this.check('OCI runtime exec failed', args, { stdio: opts.stdio });
  }

  /** Resolves to the failure's text, or undefined on success (kill errors are classified by the caller). */
  async kill(id: string, signal: number, all: boolean): Promise<string | undefined> {
    const r = await this.run(['kill', ...(all ? ['--all'] : []), id, String(signal)]);
    return r.code === 0 ? undefined : this.failureText(r);
  }

  async delete(id: string, force: boolean): Promise<string | undefined> {
    const r = await this.run(['delete', ...(force ? ['--force'] : []), id]);
    return r.code === 0 ? undefined : this.failureText(r);
  }

  async pause(id: string): Promise<void> {
    await this.check('OCI runtime pause failed', ['pause', id]);
  }

  async resume(id: string): Promise<void> {
    await this.check('OCI runtime resume failed', ['resume', id]);
  }

  async update(id: string, resourcesJson: string | Buffer): Promise<void> {
    await this.check('OCI runtime update failed', ['update', '--resources', '-', id], { input: resourcesJson });
  }

  async ps(id: string): Promise<number[]> {
    const r = await this.check('failed to list pids', ['ps', '--format', 'json', id]);
    const pids = JSON.parse(r.stdout.trim() || '[]') as unknown;
    return Array.isArray(pids) ? pids.map(Number) : [];
  }

  /** Runs a runc command; the result carries what runc logged meanwhile (its error, if any). */
  private async run(args: string[], opts: RunOptions = {}): Promise<CommandResult & { logged?: string }> {
    const global = ['--root', this.config.root, '--log', this.logFile, '--log-format', 'json'];
    if (this.config.systemdCgroup) global.push('--systemd-cgroup');
    const offset = logSize(this.logFile);
    const r = await this.reaper.run(this.config.binary, [...global, ...args], opts);
    return r.code === 0 ? r : { ...r, logged: lastRuntimeError(this.logFile, offset) };
  }

  private async check(what: string, args: string[], opts: RunOptions = {}): Promise<CommandResult> {
    let r: CommandResult & { logged?: string };
    try {
      r = await this.run(args, opts);
    } catch (err) {
      throw new RuncError(`${what}: ${(err as Error).message}`, { code: null, signal: null, stdout: '', stderr: '' });
    }
    if (r.code !== 0) throw new RuncError(`${what}: ${this.failureText(r)}`, r);
    return r;
  }

  /** The runtime's last logged error (as the stock shim reports it), else its stderr, else its exit status. */
  private failureText(r: CommandResult & { logged?: string }): string {
    return r.logged ?? (r.stderr.trim() || `exit status ${r.code ?? r.signal}`);
  }
}

function logSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The message of the last `"level":"error"` line of a runc JSON log, from byte `offset` on. */
export function lastRuntimeError(logFile: string, offset = 0): string | undefined {
  let text: string;
  try {
    const fd = openSync(logFile, 'r');
    try {
      const size = fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, Math.min(size - offset, 1 << 20)));
      const n = readSync(fd, buf, 0, buf.length, Math.max(offset, size - buf.length));
      text = buf.subarray(0, n).toString('utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  let message: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.includes('"error"')) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === 'error' && entry.msg) message = entry.msg.trim();
    } catch {}
  }
  return message;
}
