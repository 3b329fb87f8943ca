import koffi from 'koffi';
import { closeSync, openSync, readFileSync, writeFileSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';

const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

let flock: ((fd: number, op: number) => number) | undefined;
function flockFn() {
  flock ??= koffi.load('libc.so.6').func('int flock(int fd, int op)') as (fd: number, op: number) => number;
  return flock;
}

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
    if (flockFn()(fd, LOCK_EX | LOCK_NB) !== 0) {
      const errno = koffi.errno();
      closeSync(fd);
      let holder = '';
      try {
        holder = readFileSync(path, 'utf8').trim();
      } catch {
        // the message below is clear enough without the PID
      }
      if (errno === EWOULDBLOCK) {
        throw new RootLockedError(
          `another berthd${holder ? ` (pid ${holder})` : ''} is already running with root ${root} (lock ${path} is held)`,
        );
      }
      throw new RootLockedError(`cannot lock ${path}: errno ${errno}`);
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
