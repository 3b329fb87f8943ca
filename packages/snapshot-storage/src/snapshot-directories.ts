import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

const TEMP_PREFIX = 'new-';
const REMOVAL_PREFIX = 'rm-';

/**
 * The `<root>/snapshots` directory of a snapshotter: one entry per snapshot,
 * named by its id. New snapshots are built under a temporary name and renamed
 * into place; removed ones are renamed aside before they are deleted, so an
 * entry named by an id is always complete, and whatever a crash leaves behind
 * (temporary, half-deleted or unowned entries) is removed by `cleanup`.
 *
 * The directory entries are made and renamed synchronously: each is one
 * metadata operation of some microseconds, while through the thread pool
 * each cost a hand-off to a worker and back (futexes and an event-loop
 * wake-up) several times that, on every Snapshots.Prepare and Remove. A
 * disk that stalls its journal stalls berthd's event loop for as long.
 */
export class SnapshotDirectories {
  /** Entries this process is building or deleting, which cleanup must leave alone. */
  private readonly busy = new Set<string>();
  /** The deletions `remove` left running, one after another; `settle` waits for them. */
  private deleting: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    private readonly onError: (message: string, err: unknown) => void = () => {},
  ) {}

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  path(id: string): string {
    return join(this.dir, id);
  }

  /** A new, empty temporary directory to build a snapshot in; pass it to `install` or `discard`. */
  async createTemp(): Promise<string> {
    const temp = mkdtempSync(join(this.dir, TEMP_PREFIX));
    this.busy.add(temp);
    return temp;
  }

  /**
   * Rename a temporary directory to the snapshot's id. An entry already named
   * so cannot belong to a live snapshot (ids come from the metadata, under its
   * write lock): it is what a crash left after an unrecorded create, so it goes.
   */
  async install(temp: string, id: string): Promise<string> {
    const path = this.path(id);
    try {
      renameSync(temp, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      await this.removeEntry(id);
      renameSync(temp, path);
    }
    this.busy.delete(temp);
    return path;
  }

  /** Delete a temporary directory that will not be installed. */
  async discard(temp: string): Promise<void> {
    try {
      await rm(temp, { recursive: true, force: true });
    } catch (err) {
      this.onError(`failed to remove temporary snapshot directory ${temp}`, err);
    } finally {
      this.busy.delete(temp);
    }
  }

  /**
   * Take the directory of snapshot `id` away (absent is fine): it is renamed
   * aside at once, so the id's path is free when this returns, and deleted
   * afterwards, one removal after another (`settle` waits for them). As the
   * directory of a container that ran may hold a whole tree, the caller (a
   * `ctr run --rm` waiting on Snapshots.Remove) does not wait for that
   * (Snapshots.Remove over ten `run --rm` of /bin/true: median 4.2 -> 3.2 ms,
   * more for a container that wrote a tree). A crash in between leaves an
   * `rm-` entry, which cleanup removes.
   */
  async remove(id: string): Promise<void> {
    const aside = await this.renameAside(id);
    if (!aside) return;
    this.busy.add(aside);
    this.deleting = this.deleting.then(() => this.delete(aside));
  }

  /** Waits for the deletions `remove` started. */
  settle(): Promise<void> {
    return this.deleting;
  }

  private async removeEntry(name: string): Promise<void> {
    const aside = await this.renameAside(name);
    if (aside) await this.delete(aside);
  }

  private async renameAside(name: string): Promise<string | undefined> {
    const aside = join(this.dir, `${REMOVAL_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(this.path(name), aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return aside;
  }

  private async delete(path: string): Promise<void> {
    this.busy.add(path);
    try {
      await rm(path, { recursive: true, force: true });
    } catch (err) {
      // Left for the next cleanup; the snapshot itself is already gone.
      this.onError(`failed to remove snapshot directory ${path}`, err);
    } finally {
      this.busy.delete(path);
    }
  }

  /**
   * Entries no snapshot owns, given the ids the metadata knows: call under
   * the metadata write lock, so no snapshot is created meanwhile. Unowned ids
   * are renamed aside at once; `remove` the returned paths afterwards.
   */
  async unowned(ids: ReadonlySet<string>): Promise<string[]> {
    const out: string[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (ids.has(name) || this.busy.has(path)) continue;
      if (name.startsWith(REMOVAL_PREFIX)) {
        out.push(path);
        continue;
      }
      const aside = join(this.dir, `${REMOVAL_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
      renameSync(path, aside);
      out.push(aside);
    }
    for (const path of out) this.busy.add(path);
    return out;
  }

  /** Delete what `unowned` returned. */
  async removeAll(paths: readonly string[]): Promise<void> {
    for (const path of paths) {
      this.busy.delete(path);
      await this.delete(path);
    }
  }
}
