import { flock, LOCK_EX, LOCK_NB } from '@berth/sys';
import { closeSync, ftruncateSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class RootLockedError extends Error {}

/**
 * An exclusive flock(2) on `<root>/berthd.lock`, held for the daemon's life.
 * The kernel drops it when the process dies, so a crashed berthd never leaves
 * a stale lock behind; the PID inside is only for the error message.
 */
export class RootLock {
  private constructor(private fd: number | undefined) {}

  static acquire(root: string): RootLock {
    const path = join(root, 'berthd.lock');
    const fd = openSync(path, 'a+', 0o600);
    try {
      flock(fd, LOCK_EX | LOCK_NB);
    } catch (err) {
      closeSync(fd);
      let holder = '';
      try {
        holder = readFileSync(path, 'utf8').trim();
      } catch {
        // the message below is clear enough without the PID
      }
      if (['EAGAIN', 'EWOULDBLOCK'].includes((err as { code?: string }).code ?? '')) {
        throw new RootLockedError(
          `another berthd${holder ? ` (pid ${holder})` : ''} is already running with root ${root} (lock ${path} is held)`,
        );
      }
      throw new RootLockedError(`cannot lock ${path}: ${(err as Error).message}`);
    }
    ftruncateSync(fd, 0);
    writeFileSync(fd, `${process.pid}\n`);
    return new RootLock(fd);
  }

  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
