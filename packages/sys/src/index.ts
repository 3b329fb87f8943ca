export { flock, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN } from './flock.js';
export { check, libc, SyscallError } from './libc.js';
export {
  type MountSpec,
  MountFlag,
  mount,
  mountAll,
  mountSpec,
  parseMountOptions,
  UmountFlag,
  umount,
  unmountAll,
} from './mount.js';
export {
  type ChildExit,
  closeFd,
  eventfd,
  type FdWatch,
  isChildSubreaper,
  pidfdOpen,
  pipe,
  readEventfd,
  reapPid,
  reapPidfd,
  setChildSubreaper,
  setNonBlocking,
  signalEventfd,
  watchReadable,
} from './process.js';
export { prepareNativeCalls } from './prepare.js';
export { posixSpawn, type SpawnOptions } from './spawn.js';
export {
  acceptConnection,
  connectUnixSocket,
  listenUnixSocket,
  type ReceivedFd,
  receiveFd,
  tryReceiveFd,
  sendFd,
  UNIX_PATH_MAX,
} from './socket.js';
export { getWindowSize, openPty, setWindowSize, type WindowSize } from './terminal.js';
export { type IdleTrim, type IdleTrimOptions, prepareIdleTrim, trimMemoryNow, trimMemoryWhenIdle } from './idle-trim.js';
export { releaseFreeMemory, returnFreedMemoryPromptly } from './malloc.js';
export { makedev, mknod, S_IFBLK, S_IFCHR, S_IFIFO, splitDev } from './mknod.js';
export { fsetxattr, lgetxattr, lgetxattrs, llistxattr, lsetxattr } from './xattr.js';
export { startWriteback } from './writeback.js';
