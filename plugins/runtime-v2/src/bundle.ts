import { check, libc, unmountAll } from '@berth/sys';
import { AlreadyExistsError, type OciSpec, validateIdentifier } from '@berth/plugin-api';
import { lstat, mkdir, readdir, readFile, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

let mkfifoFn: ((path: string, mode: number) => number) | undefined;

function mkfifo(path: string, mode: number): void {
  mkfifoFn ??= libc().func('int mkfifo(const char *path, unsigned int mode)') as NonNullable<typeof mkfifoFn>;
  check('mkfifo', mkfifoFn(path, mode), path);
}

/** Files of a bundle, as containerd 1.6 and its shims lay them out. */
export const BundleFile = {
  spec: 'config.json',
  rootfs: 'rootfs',
  /** Written by the shim on start: its ttrpc address. */
  address: 'address',
  /** A FIFO the shim logs to; it dies without a reader. */
  log: 'log',
  /** The shim binary, for `delete` after a restart. */
  shimBinary: 'shim-binary-path',
  /** A link to the task's persistent work folder. */
  work: 'work',
} as const;

/**
 * A task's bundle: `<state>/<ns>/<id>` (state being the plugin's
 * `<state>/io.containerd.runtime.v2.task`) with config.json, an empty
 * `rootfs/` the shim mounts the rootfs on, the `log` FIFO and the shim's
 * `address`; `work` links to `<root>/<ns>/<id>`.
 */
export class Bundle {
  readonly path: string;
  readonly workDir: string;

  constructor(
    stateRoot: string,
    workRoot: string,
    readonly namespace: string,
    readonly id: string,
  ) {
    validateIdentifier('namespace', namespace);
    validateIdentifier('id', id);
    this.path = join(stateRoot, namespace, id);
    this.workDir = join(workRoot, namespace, id);
  }

  get rootfs(): string {
    return join(this.path, BundleFile.rootfs);
  }

  get logPath(): string {
    return join(this.path, BundleFile.log);
  }

  /** Lay out a new bundle; AlreadyExists when its folder is there. */
  static async create(
    stateRoot: string,
    workRoot: string,
    namespace: string,
    id: string,
    spec: OciSpec,
    shimBinary: string,
  ): Promise<Bundle> {
    const bundle = new Bundle(stateRoot, workRoot, namespace, id);
    await mkdir(join(stateRoot, namespace), { recursive: true, mode: 0o711 });
    await mkdir(join(workRoot, namespace), { recursive: true, mode: 0o711 });
    try {
      await mkdir(bundle.path, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AlreadyExistsError(`bundle ${bundle.path}: already exists`);
      throw err;
    }
    try {
      await mkdir(bundle.workDir, { recursive: true, mode: 0o711 });
      await symlink(bundle.workDir, join(bundle.path, BundleFile.work));
      await mkdir(bundle.rootfs, { mode: 0o711 });
      await writeFile(join(bundle.path, BundleFile.spec), JSON.stringify(spec), { mode: 0o666 });
      await writeFile(join(bundle.path, BundleFile.shimBinary), shimBinary, { mode: 0o600 });
      mkfifo(bundle.logPath, 0o700);
    } catch (err) {
      await bundle.delete().catch(() => {});
      throw err;
    }
    return bundle;
  }

  /** The shim's address (`unix://…`), once it wrote one. */
  async address(): Promise<string | undefined> {
    return readText(join(this.path, BundleFile.address));
  }

  /** The shim binary recorded at create. */
  async shimBinary(): Promise<string | undefined> {
    return readText(join(this.path, BundleFile.shimBinary));
  }

  async isEmpty(): Promise<boolean> {
    return (await readdir(this.path).catch(() => [])).length === 0;
  }

  /**
   * Remove the bundle and its work folder. The rootfs is unmounted first and
   * removed only when empty: a recursive removal through a mount that is
   * still there would delete the container's files.
   */
  async delete(): Promise<void> {
    try {
      unmountAll(this.rootfs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      await rmdir(this.rootfs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // The work link is removed with the bundle; the link's target separately (never followed).
    await rm(this.path, { recursive: true, force: true });
    await rm(this.workDir, { recursive: true, force: true });
  }

  /** Every bundle on disk: `<state>/<ns>/<id>` folders with valid names. */
  static async list(stateRoot: string, workRoot: string): Promise<Bundle[]> {
    const bundles: Bundle[] = [];
    for (const ns of await readdir(stateRoot).catch(() => [] as string[])) {
      if (ns.startsWith('.')) continue;
      const nsDir = join(stateRoot, ns);
      if (!(await lstat(nsDir)).isDirectory()) continue;
      for (const id of await readdir(nsDir)) {
        if (id.startsWith('.')) continue;
        try {
          if (!(await lstat(join(nsDir, id))).isDirectory()) continue;
          bundles.push(new Bundle(stateRoot, workRoot, ns, id));
        } catch {
          // not a bundle berth made
        }
      }
    }
    return bundles;
  }
}

async function readText(path: string): Promise<string | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return text || undefined;
  } catch {
    return undefined;
  }
}
