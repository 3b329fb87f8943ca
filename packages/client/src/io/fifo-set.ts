import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import type { ProcessIOConfig } from '../tasks-client.js';

const run = promisify(execFile);

/**
 * Where FIFOs go: /run/berth/fifo for root (containerd uses
 * /run/containerd/fifo), else under $XDG_RUNTIME_DIR or the temp folder.
 * `$BERTH_FIFO_DIR` overrides both.
 */
export function defaultFifoRoot(): string {
  if (process.env.BERTH_FIFO_DIR) return resolve(process.env.BERTH_FIFO_DIR);
  if (process.getuid?.() === 0) return '/run/berth/fifo';
  return join(process.env.XDG_RUNTIME_DIR || join(tmpdir(), `berth-${process.getuid?.() ?? 'user'}`), 'berth', 'fifo');
}

export interface FifoSetOptions {
  /** Default: defaultFifoRoot(). */
  readonly root?: string;
  readonly namespace: string;
  readonly containerId: string;
  /** The container id for the init process, else the exec id. */
  readonly processId: string;
  readonly stdin?: boolean;
  /** Default true. */
  readonly stdout?: boolean;
  /** Default true unless `terminal` (a terminal has one output). */
  readonly stderr?: boolean;
  readonly terminal?: boolean;
}

/**
 * The FIFOs one process's stdio goes through, as containerd's client makes
 * them: a private folder `<root>/<namespace>/<container>/<process>-XXXXXX/`
 * holding `<process>-stdin`, `-stdout`, `-stderr` (mode 0700). The daemon's
 * shim opens the other ends; the paths live on in the task (Tasks.Get), so
 * a later client can attach to them.
 */
export class FifoSet implements ProcessIOConfig {
  private constructor(
    readonly dir: string,
    readonly stdin: string,
    readonly stdout: string,
    readonly stderr: string,
    readonly terminal: boolean,
  ) {}

  static async create(opts: FifoSetOptions): Promise<FifoSet> {
    const root = opts.root ?? defaultFifoRoot();
    const parent = join(root, opts.namespace, opts.containerId);
    await mkdir(parent, { recursive: true, mode: 0o700 });
    let dir: string;
    try {
      dir = await mkdtemp(join(parent, `${opts.processId}-`));
    } catch (err) {
      // A concurrent removeFifoDir may have taken the empty parent away between the two calls.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(parent, { recursive: true, mode: 0o700 });
      dir = await mkdtemp(join(parent, `${opts.processId}-`));
    }
    const terminal = !!opts.terminal;
    const path = (name: string, wanted: boolean) => (wanted ? join(dir, `${opts.processId}-${name}`) : '');
    const set = new FifoSet(
      dir,
      path('stdin', !!opts.stdin),
      path('stdout', opts.stdout ?? true),
      path('stderr', (opts.stderr ?? true) && !terminal),
      terminal,
    );
    const fifos = [set.stdin, set.stdout, set.stderr].filter(Boolean);
    try {
      // Node has no mkfifo(3); one mkfifo(1) makes all of them.
      if (fifos.length > 0) await run('mkfifo', ['-m', '0700', ...fifos]);
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw new Error(`cannot create FIFOs in ${dir}: ${(err as Error).message}`);
    }
    return set;
  }

  /**
   * Open the read ends of stdout and stderr and keep them until `release()`:
   * the stock shim opens its write ends blocking until a reader is there, so
   * a detached task needs one while it is created and started.
   */
  holdReaders(): { release(): void } {
    const fds = [this.stdout, this.stderr].filter(Boolean).map((p) => openSync(p, constants.O_RDONLY | constants.O_NONBLOCK));
    return {
      release: () => {
        for (const fd of fds.splice(0)) closeSync(fd);
      },
    };
  }

  /** Remove the folder and the FIFOs in it (the process's output is gone once both ends close). */
  async remove(): Promise<void> {
    await removeFifoDir(this, dirname(dirname(dirname(this.dir))));
  }
}

/**
 * Remove the folder that holds a process's FIFOs — only when it lies under
 * `root` (default: defaultFifoRoot()), so paths from another client's task
 * are left alone — and the emptied container and namespace folders above it.
 */
export async function removeFifoDir(io: ProcessIOConfig, root = defaultFifoRoot()): Promise<boolean> {
  const path = io.stdout || io.stderr || io.stdin;
  if (!path) return false;
  const dir = dirname(resolve(path));
  const base = resolve(root) + sep;
  // <root>/<namespace>/<container>/<process>-XXXXXX
  const rel = dir.startsWith(base) ? dir.slice(base.length).split(sep) : [];
  if (rel.length !== 3) return false;
  await rm(dir, { recursive: true, force: true });
  for (const up of [dirname(dir), dirname(dirname(dir))]) {
    try {
      await rmdir(up);
    } catch {
      break; // not empty: another process's FIFOs are there
    }
  }
  return true;
}

/**
 * Remove the FIFOs of every process of a container under `root` (its
 * execs' too, which end with the task), and the emptied namespace folder.
 */
export async function removeContainerFifos(namespace: string, containerId: string, root = defaultFifoRoot()): Promise<void> {
  if (!namespace || !containerId || namespace.includes('/') || containerId.includes('/') || containerId.startsWith('.')) return;
  const dir = join(root, namespace, containerId);
  await rm(dir, { recursive: true, force: true });
  await rmdir(dirname(dir)).catch(() => {});
}
