import { InvalidArgumentError, UnknownError } from '@berth/plugin-api';
import { SHIM_BINARY } from '@berth/shim';
import { accessSync, constants, readdirSync, readFileSync, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The runtime `ctr run` always sends. */
export const RUNC_V2 = 'io.containerd.runc.v2';
/** berth's shim: by default it runs what asks for `io.containerd.runc.v2`. */
export const BERTH_SHIM = SHIM_BINARY;

/** A runtime's entry in `[plugins."io.containerd.runtime.v2.task".runtimes."<name>"]`. */
export interface RuntimeEntry {
  /** A shim binary: an absolute path, or a name looked up as shims are. Empty: the name's own rule. */
  readonly binary: string;
}

/**
 * containerd's rule: `io.containerd.X.vN` names `containerd-shim-X-vN` (the
 * last two dot-separated parts); `containerd-shim-…` is a binary name already.
 * Empty when the name has fewer than two parts.
 */
export function shimBinaryName(runtime: string): string {
  if (runtime.startsWith('containerd-shim-')) return runtime;
  const parts = runtime.split('.');
  if (parts.length < 2) return '';
  return `containerd-shim-${parts[parts.length - 2]}-${parts[parts.length - 1]}`;
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The folder holding the workspace's root package.json (the one with "workspaces"), if berth runs from one. */
function workspaceRoot(from: string): string | undefined {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { workspaces?: unknown };
      if (manifest.workspaces) return dir;
    } catch {
      // no package.json here
    }
  }
  return undefined;
}

/** `bin` entries of the workspace's packages (packages/*, plugins/*, tools/*), by command name. */
function workspaceBins(root: string): Map<string, string> {
  const bins = new Map<string, string>();
  for (const group of ['packages', 'plugins', 'tools']) {
    let names: string[];
    try {
      names = readdirSync(join(root, group));
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const dir = join(root, group, name);
      try {
        const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; bin?: unknown };
        const bin = manifest.bin;
        if (typeof bin === 'string' && manifest.name) bins.set(manifest.name.replace(/^@[^/]+\//, ''), resolve(dir, bin));
        else if (bin && typeof bin === 'object') {
          for (const [cmd, path] of Object.entries(bin as Record<string, string>)) bins.set(cmd, resolve(dir, path));
        }
      } catch {
        // not a package
      }
    }
  }
  return bins;
}

export interface RuntimeResolverOptions {
  /** The config's runtimes table. */
  readonly runtimes?: Readonly<Record<string, RuntimeEntry>>;
  /** Folders searched before berth's own; default: $PATH at each lookup. */
  readonly path?: () => readonly string[];
  /** Where berth's own bins are looked for (node_modules/.bin up the tree, workspace packages); default: this module's folder. */
  readonly installDir?: string;
}

/**
 * Resolves a runtime name to a shim binary as containerd does, with berth's
 * additions: a runtimes table from the config, berth's own bins (its
 * node_modules/.bin folders and the workspace's packages), and
 * `io.containerd.runc.v2` running berth's shim when it is installed.
 */
export class RuntimeResolver {
  private readonly runtimes: Readonly<Record<string, RuntimeEntry>>;
  private readonly path: () => readonly string[];
  private readonly installDir: string;
  private bins: Map<string, string> | undefined;

  constructor(opts: RuntimeResolverOptions = {}) {
    this.runtimes = opts.runtimes ?? {};
    this.path = opts.path ?? (() => (process.env.PATH ?? '').split(delimiter).filter((d) => isAbsolute(d)));
    this.installDir = opts.installDir ?? dirname(fileURLToPath(import.meta.url));
  }

  /**
   * The absolute path of the shim binary for `runtime`. Failures are
   * UnknownError with containerd's messages (an unknown runtime names the
   * missing binary), as containerd answers.
   */
  resolve(runtime: string): string {
    if (!runtime) throw new InvalidArgumentError('no runtime name');
    const configured = Object.hasOwn(this.runtimes, runtime) ? this.runtimes[runtime]?.binary : undefined;
    if (configured) {
      if (isAbsolute(configured)) return this.absolute(configured);
      const found = this.lookup(configured);
      if (!found) {
        throw new UnknownError(`runtime ${JSON.stringify(runtime)} binary not installed ${JSON.stringify(configured)}: file does not exist`);
      }
      return found;
    }
    if (isAbsolute(runtime)) return this.absolute(runtime);
    const name = shimBinaryName(runtime);
    if (!name) {
      throw new UnknownError(
        `invalid runtime name ${runtime}, correct runtime name should be either format like \`io.containerd.runc.v1\` or a full path to the binary`,
      );
    }
    if (runtime === RUNC_V2) {
      const berth = this.lookup(BERTH_SHIM);
      if (berth) return berth;
    }
    const found = this.lookup(name);
    if (!found) throw new UnknownError(`runtime ${JSON.stringify(runtime)} binary not installed ${JSON.stringify(name)}: file does not exist`);
    return found;
  }

  /** A binary name on $PATH, then in berth's own node_modules/.bin folders, then among the workspace's bins. */
  lookup(name: string): string | undefined {
    for (const dir of this.path()) {
      const candidate = join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
    for (let dir = this.installDir; dir !== dirname(dir); dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', '.bin', name);
      if (isExecutableFile(candidate)) return candidate;
    }
    this.bins ??= (() => {
      const root = workspaceRoot(this.installDir);
      return root ? workspaceBins(root) : new Map<string, string>();
    })();
    const bin = this.bins.get(name);
    return bin && isExecutableFile(bin) ? bin : undefined;
  }

  private absolute(path: string): string {
    try {
      statSync(path);
    } catch (err) {
      throw new UnknownError(`invalid custom binary path: stat ${path}: ${describe(err)}`);
    }
    if (!isExecutableFile(path)) throw new UnknownError(`invalid custom binary path: ${path} is not an executable file`);
    return path;
  }
}

function describe(err: unknown): string {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String((err as Error).message);
}
