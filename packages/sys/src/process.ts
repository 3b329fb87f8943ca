import koffi from 'koffi';
import { check, libc, SyscallError } from './libc.js';

const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
/** The same number on every architecture (the unified syscall table). */
const SYS_PIDFD_OPEN = 434;
const P_PID = 1;
const P_PIDFD = 3;
const WNOHANG = 1;
const WEXITED = 4;
const CLD_EXITED = 1;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const EFD_CLOEXEC = O_CLOEXEC;
const EFD_NONBLOCK = O_NONBLOCK;
/** siginfo_t is 128 bytes; si_code at 8, si_pid at 16, si_status at 24 on Linux's 64-bit ABIs. */
const SIGINFO_SIZE = 128;

type Fns = {
  prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number;
  prctlGet: (option: number, out: number[], a3: number, a4: number, a5: number) => number;
  syscall2: (n: number, a: number, b: number) => number;
  waitid: (idtype: number, id: number, info: Buffer, options: number) => number;
  pipe2: (fds: number[], flags: number) => number;
  eventfd: (initval: number, flags: number) => number;
  read: (fd: number, buf: Buffer, n: number) => number;
  write: (fd: number, buf: Buffer, n: number) => number;
  close: (fd: number) => number;
  fcntl: (fd: number, cmd: number, arg: number) => number;
};
let fns: Fns | undefined;

/** Declares this module's libc functions (prctl, waitid, pipe2, eventfd…) with koffi now rather than at first use. */
export function declareProcessFunctions(): void {
  f();
}

function f(): Fns {
  if (!fns) {
    const lib = libc();
    fns = {
      prctl: lib.func('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)'),
      prctlGet: lib.func('int prctl(int option, _Out_ int *arg2, unsigned long a3, unsigned long a4, unsigned long a5)'),
      syscall2: lib.func('long syscall(long n, long a, long b)'),
      waitid: lib.func('int waitid(int idtype, int id, _Out_ uint8_t *info, int options)'),
      pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
      eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
      read: lib.func('long read(int fd, _Out_ uint8_t *buf, unsigned long n)'),
      write: lib.func('long write(int fd, const uint8_t *buf, unsigned long n)'),
      close: lib.func('int close(int fd)'),
      fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
    } as Fns;
  }
  return fns;
}

/**
 * prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants re-parent to this
 * process instead of init, so a shim can collect the exit status of
 * container processes that `runc create` / `runc exec --detach` leave behind.
 */
export function setChildSubreaper(on = true): void {
  check('prctl(PR_SET_CHILD_SUBREAPER)', f().prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0));
}

export function isChildSubreaper(): boolean {
  const out = [0];
  check('prctl(PR_GET_CHILD_SUBREAPER)', f().prctlGet(PR_GET_CHILD_SUBREAPER, out, 0, 0, 0));
  return out[0] !== 0;
}

/** pidfd_open(2): a descriptor that becomes readable when the process exits (close it when done). */
export function pidfdOpen(pid: number): number {
  return check('pidfd_open', Number(f().syscall2(SYS_PIDFD_OPEN, pid, 0)), String(pid));
}

export interface ChildExit {
  readonly pid: number;
  /** The exit code, or 128 + the signal number for a process killed by a signal (as shells report it). */
  readonly status: number;
  /** The signal that killed it, if one did. */
  readonly signal?: number;
}

function decodeSiginfo(info: Buffer): ChildExit | undefined {
  const pid = info.readInt32LE(16);
  if (pid === 0) return undefined; // WNOHANG and still running
  const code = info.readInt32LE(8);
  const value = info.readInt32LE(24);
  return code === CLD_EXITED ? { pid, status: value } : { pid, status: 128 + value, signal: value };
}

/**
 * waitid(P_PIDFD, pidfd, WEXITED|WNOHANG): reaps the child behind the pidfd
 * if it has exited; undefined while it runs. Only this one child is reaped,
 * so children that libuv waits for (child_process) are never taken from it.
 */
export function reapPidfd(pidfd: number): ChildExit | undefined {
  const info = Buffer.alloc(SIGINFO_SIZE);
  check('waitid', f().waitid(P_PIDFD, pidfd, info, WEXITED | WNOHANG));
  return decodeSiginfo(info);
}

/** waitid(P_PID, pid, WEXITED|WNOHANG) for one child; undefined while it runs. ECHILD when it is not our child. */
export function reapPid(pid: number): ChildExit | undefined {
  const info = Buffer.alloc(SIGINFO_SIZE);
  check('waitid', f().waitid(P_PID, pid, info, WEXITED | WNOHANG), String(pid));
  return decodeSiginfo(info);
}

/** pipe2(O_CLOEXEC): [read end, write end]. Hand the ends to a child through spawn's stdio, which clears CLOEXEC there. */
export function pipe(): [read: number, write: number] {
  const fds = [-1, -1];
  check('pipe2', f().pipe2(fds, O_CLOEXEC));
  return [fds[0] as number, fds[1] as number];
}

/** eventfd(2), close-on-exec and non-blocking. */
export function eventfd(initial = 0): number {
  return check('eventfd', f().eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK));
}

/** Reads and resets a non-blocking eventfd's counter: 0n when nothing was signalled. */
export function readEventfd(fd: number): bigint {
  const buf = Buffer.alloc(8);
  const n = Number(f().read(fd, buf, 8));
  if (n === -1) {
    const errno = koffi.errno();
    if (errno === 11) return 0n; // EAGAIN
    throw new SyscallError('read(eventfd)', errno);
  }
  return buf.readBigUInt64LE(0);
}

/** Adds `value` to an eventfd's counter (wakes whoever polls it). */
export function signalEventfd(fd: number, value = 1n): void {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(value);
  check('write(eventfd)', Number(f().write(fd, buf, 8)));
}

/** close(2) for descriptors made here (Node's fs.closeSync would do as well). */
export function closeFd(fd: number): void {
  check('close', f().close(fd));
}

const F_GETFL = 3;
const F_SETFL = 4;

/** Sets or clears O_NONBLOCK on a descriptor (its open file description, shared by every dup). */
export function setNonBlocking(fd: number, on = true): void {
  const flags = check('fcntl(F_GETFL)', f().fcntl(fd, F_GETFL, 0));
  check('fcntl(F_SETFL)', f().fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK));
}

export interface FdWatch {
  /** Stops watching; the descriptor stays open. */
  close(): void;
  /** Lets the process exit while this watch is the only thing left. */
  unref(): void;
}

/**
 * Calls `onReadable` on the event loop whenever `fd` is readable (libuv's
 * uv_poll through koffi): for pidfds, eventfds and other descriptors that
 * Node's streams refuse.
 */
export function watchReadable(fd: number, onReadable: () => void): FdWatch {
  const handle = koffi.node.poll(fd, { readable: true }, () => onReadable());
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      handle.close();
    },
    unref() {
      handle.unref();
    },
  };
}
