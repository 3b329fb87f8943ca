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
