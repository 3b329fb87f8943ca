import { check, libc } from './libc.js';

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

let flockFn: ((fd: number, op: number) => number) | undefined;

/** flock(2); a held lock with LOCK_NB is SyscallError code EWOULDBLOCK (the same number as EAGAIN). */
export function flock(fd: number, operation: number): void {
  check('flock', declareFlock()(fd, operation));
}

/** Declares flock(2) with koffi now rather than at its first call. */
export function declareFlock(): NonNullable<typeof flockFn> {
  flockFn ??= libc().func('int flock(int fd, int op)') as NonNullable<typeof flockFn>;
  return flockFn;
}
