import koffi from 'koffi';
import { check, libc, SyscallError } from './libc.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CMSG_CLOEXEC = 0x40000000;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
/** sun_path is 108 bytes, NUL included. */
export const UNIX_PATH_MAX = 107;

type Fns = {
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  listen: (fd: number, backlog: number) => number;
  connect: (fd: number, addr: Buffer, len: number) => number;
  accept4: (fd: number, addr: null, len: null, flags: number) => number;
  recvmsg: (fd: number, msg: unknown, flags: number) => number;
  sendmsg: (fd: number, msg: unknown, flags: number) => number;
};
let fns: Fns | undefined;

function f(): Fns {
  if (!fns) {
    const lib = libc();
    fns = {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      bind: lib.func('int bind(int fd, const uint8_t *addr, uint32_t len)'),
      listen: lib.func('int listen(int fd, int backlog)'),
      connect: lib.func('int connect(int fd, const uint8_t *addr, uint32_t len)'),
      accept4: lib.func('int accept4(int fd, void *addr, void *len, int flags)'),
      recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
      sendmsg: lib.func('long sendmsg(int fd, void *msg, int flags)'),
    } as Fns;
  }
  return fns;
}

function sockaddrUn(path: string): Buffer {
  const bytes = Buffer.from(path);
  if (bytes.length > UNIX_PATH_MAX) throw new Error(`unix socket path longer than ${UNIX_PATH_MAX} bytes: ${path}`);
  const addr = Buffer.alloc(2 + 108);
  addr.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

function closeQuietly(fd: number): void {
  try {
    libcClose(fd);
  } catch {}
}

let closeFn: ((fd: number) => number) | undefined;
function libcClose(fd: number): void {
  closeFn ??= libc().func('int close(int fd)') as (fd: number) => number;
  check('close', closeFn(fd));
}

/**
 * A listening unix stream socket at `path` (non-blocking, close-on-exec),
 * for peers that pass descriptors, which Node's net module cannot receive:
 * runc's `--console-socket` sends the pty master over one.
 */
export function listenUnixSocket(path: string, backlog = 4): number {
  const fd = check('socket', f().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const addr = sockaddrUn(path);
    check('bind', f().bind(fd, addr, addr.length), path);
    check('listen', f().listen(fd, backlog), path);
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/** A blocking, close-on-exec connection to a unix stream socket. */
export function connectUnixSocket(path: string): number {
  const fd = check('socket', f().socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const addr = sockaddrUn(path);
    check('connect', f().connect(fd, addr, addr.length), path);
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/** accept4 on a non-blocking listener: the connection (blocking, close-on-exec), or undefined when none waits. */
export function acceptConnection(listenFd: number): number | undefined {
  const fd = f().accept4(listenFd, null, null, SOCK_CLOEXEC);
  if (fd === -1) {
    const errno = koffi.errno();
    if (errno === EAGAIN) return undefined;
    throw new SyscallError('accept4', errno);
  }
  return fd;
}

// struct msghdr (56 bytes) + struct iovec (16) + data + control, in one native block.
const MSGHDR = 0;
const IOVEC = 56;
const DATA = 72;
const DATA_SIZE = 256;
const CONTROL = DATA + DATA_SIZE;
/** CMSG_SPACE(sizeof(int) * 4): room for a few descriptors. */
const CONTROL_SIZE = 32;
const BLOCK = CONTROL + CONTROL_SIZE;

function messageBlock(data: Buffer | undefined): { ptr: unknown; view: Buffer } {
  const ptr = koffi.alloc('uint8_t', BLOCK);
  const view = Buffer.from(koffi.view(ptr, BLOCK));
  view.fill(0);
  const base = koffi.address(ptr);
  const dataLength = data ? Math.min(data.length, DATA_SIZE) : DATA_SIZE;
  if (data) data.copy(view, DATA, 0, dataLength);
  view.writeBigUInt64LE(base + BigInt(IOVEC), MSGHDR + 16); // msg_iov
  view.writeBigUInt64LE(1n, MSGHDR + 24); // msg_iovlen
  view.writeBigUInt64LE(base + BigInt(CONTROL), MSGHDR + 32); // msg_control
  view.writeBigUInt64LE(BigInt(CONTROL_SIZE), MSGHDR + 40); // msg_controllen
  view.writeBigUInt64LE(base + BigInt(DATA), IOVEC); // iov_base
  view.writeBigUInt64LE(BigInt(dataLength), IOVEC + 8); // iov_len
  return { ptr, view };
}

export interface ReceivedFd {
  /** The descriptor (close-on-exec), or undefined when the peer sent none. */
  readonly fd: number | undefined;
  /** The bytes that came with it (runc sends the pty's path). */
  readonly data: Buffer;
}

/**
 * recvmsg with SCM_RIGHTS on a connected unix socket: the first descriptor
 * passed (extra ones are closed). Blocks on a blocking socket until the peer
 * sends or closes; undefined fd and empty data mean the peer closed.
 */
export function receiveFd(connFd: number): ReceivedFd {
  return receive(connFd, 0) as ReceivedFd;
}

/**
 * receiveFd without blocking (MSG_DONTWAIT), for a socket the event loop must
 * not wait on: undefined when nothing has arrived yet.
 */
export function tryReceiveFd(connFd: number): ReceivedFd | undefined {
  return receive(connFd, MSG_DONTWAIT);
}

function receive(connFd: number, flags: number): ReceivedFd | undefined {
  const { ptr, view } = messageBlock(undefined);
  try {
    const n = Number(f().recvmsg(connFd, ptr, MSG_CMSG_CLOEXEC | flags));
    if (n === -1) {
      const errno = koffi.errno();
      if (errno === EAGAIN && flags & MSG_DONTWAIT) return undefined;
      throw new SyscallError('recvmsg', errno);
    }
    const data = Buffer.from(view.subarray(DATA, DATA + n));
    const controlLength = Number(view.readBigUInt64LE(MSGHDR + 40));
    const fds: number[] = [];
    for (let off = CONTROL; off + 16 <= CONTROL + controlLength; ) {
      const len = Number(view.readBigUInt64LE(off));
      if (len < 16) break;
      if (view.readInt32LE(off + 8) === SOL_SOCKET && view.readInt32LE(off + 12) === SCM_RIGHTS) {
        for (let p = off + 16; p + 4 <= off + len; p += 4) fds.push(view.readInt32LE(p));
      }
      off += (len + 7) & ~7;
    }
    for (const extra of fds.slice(1)) closeQuietly(extra);
    return { fd: fds[0], data };
  } finally {
    koffi.free(ptr);
  }
}

/** sendmsg with one descriptor in SCM_RIGHTS and `data` (at least one byte) as payload. */
export function sendFd(connFd: number, fd: number, data: Buffer = Buffer.from([0])): void {
  if (data.length === 0) throw new Error('sendFd needs at least one byte of data');
  const { ptr, view } = messageBlock(data);
  try {
    view.writeBigUInt64LE(20n, CONTROL); // CMSG_LEN(sizeof(int))
    view.writeInt32LE(SOL_SOCKET, CONTROL + 8);
    view.writeInt32LE(SCM_RIGHTS, CONTROL + 12);
    view.writeInt32LE(fd, CONTROL + 16);
    view.writeBigUInt64LE(24n, MSGHDR + 40); // CMSG_SPACE(sizeof(int))
    check('sendmsg', Number(f().sendmsg(connFd, ptr, 0)));
  } finally {
    koffi.free(ptr);
  }
}
