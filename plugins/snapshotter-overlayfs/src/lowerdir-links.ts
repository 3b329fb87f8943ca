import { FailedPreconditionError } from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import { existsSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, readlink, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const DEFAULT_LINK_BASE = '/run/berth-ovl';
/** Names a link directory's owner: a symlink to the snapshotter root. */
const OWNER = '.root';
const CANDIDATES = 8;

/**
 * Short symbolic links to layer directories: `<dir>/<id in base 36>` →
 * `<root>/snapshots/<id>/fs`.
 *
 * mount(2) takes at most one page of options (4095 bytes and a NUL, silently
 * cut off beyond), and `<root>/snapshots/<id>/fs` under a root such as
 * `/var/lib/berth/io.containerd.snapshotter.v1.overlayfs` costs ~70 bytes a
 * layer, so about 55 layers fit. containerd returns the long paths and
 * shortens them when it mounts (chdir to their common parent in a forked
 * child, then relative paths), which a mounter in Node cannot do, and which
 * leaves `ctr snapshots mounts` printing options that mount(8) rejects.
 * berth instead returns lowerdir entries through these links, ~26 bytes a
 * layer (`/run/berth-ovl/k3x9/2n9c`), so about 150 layers fit, and the
 * options work as printed. overlay resolves the links when it mounts; a
 * mounted overlay does not need them afterwards.
 *
 * The default directory is `/run/berth-ovl/<4 characters of a hash of the
 * root>`, claimed through a `.root` symlink to the root (the next candidate
 * name is used when another live root holds one). It is created on first
 * need, and links are (re)made whenever mounts are computed, so a reboot
 * that empties /run loses nothing.
 */
export class LowerdirLinks {
  private claimed: Promise<string> | undefined;
  private resolved: string | undefined;
  /** Ids whose links this process made or checked, while the directory's claim stays in place. */
  private readonly known = new Set<string>();

  /** `fixedDir`: an exact directory for this root alone; absent: a candidate under `base`. */
  constructor(
    private readonly root: string,
    private readonly fixedDir?: string,
    private readonly base = DEFAULT_LINK_BASE,
  ) {}

  /** The link directory once in use. */
  get dir(): string | undefined {
    return this.resolved;
  }

  /** Link paths for these layer ids, in the same order, each link checked or made. */
  async ensure(ids: readonly string[]): Promise<string[]> {
    let dir = await this.claim();
    // One readlink tells whether the directory is still ours (not emptied by a reboot or a cleaner).
    // Synchronous: it runs on every mount computation, and on a tmpfs the readlink itself costs less
    // than a thread-pool round trip.
    if (ownerOf(dir) !== this.root) {
      this.known.clear();
      this.claimed = undefined;
      dir = await this.claim();
    }
    return Promise.all(
      ids.map(async (id) => {
        const link = join(dir, linkName(id));
        if (!this.known.has(id)) {
          await this.link(join(this.root, 'snapshots', id, 'fs'), link);
          this.known.add(id);
        }
        return link;
      }),
    );
  }

  /** Drop the link of a removed snapshot. */
  async remove(id: string): Promise<void> {
    this.known.delete(id);
    const dir = await this.existing();
    if (dir) await unlink(join(dir, linkName(id))).catch(ignore('ENOENT'));
  }

  /** Drop links to snapshots that are gone. */
  async prune(ids: ReadonlySet<string>): Promise<void> {
    const dir = await this.existing();
    if (!dir) return;
    for (const id of this.known) if (!ids.has(id)) this.known.delete(id);
    const keep = new Set([...ids].map(linkName));
    for (const name of await readdir(dir)) {
      if (name !== OWNER && !keep.has(name)) await unlink(join(dir, name)).catch(ignore('ENOENT'));
    }
  }

  private async link(target: string, link: string): Promise<void> {
    try {
      await symlink(target, link);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if ((await readlink(link)) === target) return;
      await unlink(link).catch(ignore('ENOENT'));
      await symlink(target, link).catch(ignore('EEXIST'));
    }
  }

  private claim(): Promise<string> {
    this.claimed ??= this.doClaim().then(
      (dir) => (this.resolved = dir),
      (err) => {
        this.claimed = undefined;
        throw err;
      },
    );
    return this.claimed;
  }

  private async doClaim(): Promise<string> {
    for (const dir of this.candidates()) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const owner = await readlink(join(dir, OWNER)).catch(ignore('ENOENT'));
      if (owner === this.root) return dir;
      if (owner !== undefined && existsSync(owner)) continue;
      // Free, or left by a root that no longer exists: its links are stale. Anything but links: not ours.
      const entries = await readdir(dir, { withFileTypes: true });
      if (entries.some((e) => !e.isSymbolicLink())) continue;
      for (const e of entries) await unlink(join(dir, e.name)).catch(ignore('ENOENT'));
      await symlink(this.root, join(dir, OWNER));
      return dir;
    }
    throw new FailedPreconditionError(
      this.fixedDir
        ? `lowerdir link directory ${this.fixedDir} belongs to another snapshotter root or holds other files`
        : `no free lowerdir link directory under ${this.base} for ${this.root}`,
    );
  }

  /** The directory this root already owns, without creating one. */
  private async existing(): Promise<string | undefined> {
    if (this.resolved) return this.resolved;
    return this.candidates().find((dir) => ownerOf(dir) === this.root);
  }

  /** Directories this root may use, in order of preference. */
  candidates(): string[] {
    if (this.fixedDir) return [this.fixedDir];
    return Array.from({ length: CANDIDATES }, (_, n) => {
      const hash = createHash('sha256').update(`${this.root}\n${n}`).digest();
      return join(this.base, (hash.readUInt32BE(0) % 36 ** 4).toString(36).padStart(4, '0'));
    });
  }
}

function ownerOf(dir: string): string | undefined {
  try {
    return readlinkSync(join(dir, OWNER));
  } catch {
    return undefined;
  }
}

const linkName = (id: string) => BigInt(id).toString(36);

function ignore(code: string) {
  return (err: unknown): undefined => {
    if ((err as NodeJS.ErrnoException).code !== code) throw err;
    return undefined;
  };
}
