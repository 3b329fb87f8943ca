import koffi from 'koffi';
import { libc, SyscallError } from './libc.js';

/** posix_spawnattr flags (spawn.h, glibc). */
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
/**
 * Room for posix_spawn_file_actions_t (80 bytes on glibc x86_64 and arm64),
 * posix_spawnattr_t (336) and sigset_t (128), with a margin: the buffers are
 * opaque to us and only ever passed to libc.
 */
const OPAQUE_BYTES = 1024;
const F_DUPFD_CLOEXEC = 1030;

type Fns = {
  spawnp: (pid: number[], file: string, actions: Buffer, attr: Buffer, argv: (string | null)[], envp: (string | null)[]) => number;
  actionsInit: (actions: Buffer) => number;
  actionsDestroy: (actions: Buffer) => number;
  addDup2: (actions: Buffer, fd: number, newfd: number) => number;
  addChdir: (actions: Buffer, path: string) => number;
  attrInit: (attr: Buffer) => number;
  attrDestroy: (attr: Buffer) => number;
  attrSetFlags: (attr: Buffer, flags: number) => number;
  attrSetSigMask: (attr: Buffer, set: Buffer) => number;
  attrSetSigDefault: (attr: Buffer, set: Buffer) => number;
  sigEmptySet: (set: Buffer) => number;
  fcntl: (fd: number, cmd: number, arg: number) => number;
  close: (fd: number) => number;
};
let fns: Fns | undefined;

/** Declares posix_spawn(3) and its helpers with koffi now rather than at the first spawn. */
export function declareSpawnFunctions(): void {
  f();
}

function f(): Fns {
  if (!fns) {
    const lib = libc();
    fns = {
      spawnp: lib.func(
        'int posix_spawnp(_Out_ int *pid, const char *file, void *actions, void *attr, const char **argv, const char **envp)',
      ),
      actionsInit: lib.func('int posix_spawn_file_actions_init(void *actions)'),
      actionsDestroy: lib.func('int posix_spawn_file_actions_destroy(void *actions)'),
      addDup2: lib.func('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)'),
      addChdir: lib.func('int posix_spawn_file_actions_addchdir_np(void *actions, const char *path)'),
      attrInit: lib.func('int posix_spawnattr_init(void *attr)'),
      attrDestroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
      attrSetFlags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
      attrSetSigMask: lib.func('int posix_spawnattr_setsigmask(void *attr, const void *set)'),
      attrSetSigDefault: lib.func('int posix_spawnattr_setsigdefault(void *attr, const void *set)'),
      sigEmptySet: lib.func('int sigemptyset(void *set)'),
      fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
      close: lib.func('int close(int fd)'),
    } as Fns;
  }
  return fns;
}

/** posix_spawn's functions return an error number (0 for success) rather than setting errno. */
function must(name: string, rc: number, detail?: string): void {
  if (rc !== 0) throw new SyscallError(name, rc, detail);
}

export interface SpawnOptions {
  /** The child's descriptors 0, 1 and 2: descriptors of this process, duplicated there (close-on-exec cleared). */
  readonly stdio: readonly [number, number, number];
  readonly cwd?: string;
  /** The child's environment; this process's when absent. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * posix_spawnp(3): starts `file` (searched on PATH when it has no slash) with
 * `args` and returns its pid. glibc runs the child on the parent's memory
 * until it execs (clone with CLONE_VM|CLONE_VFORK), so the cost does not grow
 * with the parent's size as a fork does: in a 45 MiB Node process,
 * child_process.spawn held the event loop 1.0 ms per command, this 0.17 ms.
 *
 * As libuv does for child_process: every signal is reset to its default and
 * none is blocked in the child, and only the three descriptors given pass to
 * it (everything this process opens is close-on-exec). Nothing else of
 * child_process comes with it: the caller owns the descriptors (and closes
 * its copies of the child's ends) and collects the exit status itself, as a
 * subreaper with pidfds does. An exec failure (ENOENT, EACCES) throws here.
 */
export function posixSpawn(file: string, args: readonly string[], opts: SpawnOptions): number {
  const fn = f();
  // The dup2s run in order: a source among 0-2 that is not its own target could be overwritten by
  // an earlier one, so it is copied above 2 first (and the copy closed after the spawn).
  const copies: number[] = [];
  const sources = opts.stdio.map((fd, target) => {
    if (fd > 2 || fd === target) return fd;
    const copy = fn.fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (copy === -1) throw new SyscallError('fcntl(F_DUPFD_CLOEXEC)', koffi.errno(), String(fd));
    copies.push(copy);
    return copy;
  });
  const actions = Buffer.alloc(OPAQUE_BYTES);
  const attr = Buffer.alloc(OPAQUE_BYTES);
  try {
    must('posix_spawn_file_actions_init', fn.actionsInit(actions));
  } catch (err) {
    for (const fd of copies) fn.close(fd);
    throw err;
  }
  try {
    must('posix_spawnattr_init', fn.attrInit(attr));
    try {
      sources.forEach((fd, target) => {
        must('posix_spawn_file_actions_adddup2', fn.addDup2(actions, fd, target));
      });
      if (opts.cwd) must('posix_spawn_file_actions_addchdir_np', fn.addChdir(actions, opts.cwd));
      // Signals 1-64 by hand: glibc's sigfillset leaves out its own two (32 and 33), and
      // posix_spawn would then start the child with those ignored, which exec keeps.
      const all = Buffer.alloc(OPAQUE_BYTES);
      all.fill(0xff, 0, 8);
      const none = Buffer.alloc(OPAQUE_BYTES);
      fn.sigEmptySet(none);
      must('posix_spawnattr_setsigdefault', fn.attrSetSigDefault(attr, all));
      must('posix_spawnattr_setsigmask', fn.attrSetSigMask(attr, none));
      must('posix_spawnattr_setflags', fn.attrSetFlags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK));
      const env = Object.entries(opts.env ?? process.env)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${v}`);
      const pid = [0];
      must('posix_spawnp', fn.spawnp(pid, file, actions, attr, [file, ...args, null], [...env, null]), file);
      return pid[0] as number;
    } finally {
      fn.attrDestroy(attr);
    }
  } finally {
    fn.actionsDestroy(actions);
    for (const fd of copies) fn.close(fd);
  }
}
