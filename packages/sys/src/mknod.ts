import { check, libc } from './libc.js';

/** File type bits of st_mode (sys/stat.h). */
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

let mknodFn: ((path: string, mode: number, dev: bigint) => number) | undefined;

/** glibc's makedev(3): the 64-bit dev_t of a major and minor number. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/**
 * mknod(2), which Node lacks: a character or block device, or a fifo, at
 * `path` (a final symlink is not followed; an existing entry is EEXIST).
 * The umask applies to `mode`, so callers chmod afterwards.
 */
export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  mknodFn ??= libc().func('int mknod(const char *path, uint32_t mode, uint64_t dev)') as NonNullable<typeof mknodFn>;
  check('mknod', mknodFn(path, mode, makedev(major, minor)), path);
}

/** Major and minor numbers of a Stats.rdev (the inverse of makedev, as glibc's major(3)/minor(3)). */
export function splitDev(rdev: number | bigint): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 32n) & 0xfffff000n) | ((dev >> 8n) & 0xfffn));
  const minor = Number(((dev >> 12n) & 0xffffff00n) | (dev & 0xffn));
  return { major, minor };
}
