import { check, libc } from './libc.js';

/** mount(2) flags (linux/mount.h). */
export const MountFlag = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  REMOUNT: 0x20,
  NOATIME: 0x400,
  BIND: 0x1000,
  REC: 0x4000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
} as const;

/** umount2(2) flags. */
export const UmountFlag = { FORCE: 1, DETACH: 2, NOFOLLOW: 8 } as const;

let mountFn: ((src: string, target: string, type: string | null, flags: number, data: string | null) => number) | undefined;
let umountFn: ((target: string, flags: number) => number) | undefined;

/** Declares mount(2) and umount2(2) with koffi now rather than at their first call. */
export function declareMountFunctions(): { mount: NonNullable<typeof mountFn>; umount: NonNullable<typeof umountFn> } {
  mountFn ??= libc().func('int mount(const char *src, const char *target, const char *type, unsigned long flags, const char *data)') as NonNullable<typeof mountFn>;
  umountFn ??= libc().func('int umount2(const char *target, int flags)') as NonNullable<typeof umountFn>;
  return { mount: mountFn, umount: umountFn };
}

export function mount(source: string, target: string, type: string | null, flags: number, data: string | null): void {
  check('mount', declareMountFunctions().mount(source, target, type, flags, data), `${type ?? ''} ${source} on ${target}`);
}

export function umount(target: string, flags = 0): void {
  check('umount2', declareMountFunctions().umount(target, flags), target);
}

/** A mount as containerd describes it (type, source, options as `mount -o` takes them). */
export interface MountSpec {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

const FLAG_OPTIONS: Record<string, [set: boolean, flag: number]> = {
  ro: [true, MountFlag.RDONLY],
  rw: [false, MountFlag.RDONLY],
  nosuid: [true, MountFlag.NOSUID],
  suid: [false, MountFlag.NOSUID],
  nodev: [true, MountFlag.NODEV],
  dev: [false, MountFlag.NODEV],
  noexec: [true, MountFlag.NOEXEC],
  exec: [false, MountFlag.NOEXEC],
  noatime: [true, MountFlag.NOATIME],
  bind: [true, MountFlag.BIND],
  rbind: [true, MountFlag.BIND | MountFlag.REC],
  remount: [true, MountFlag.REMOUNT],
};

/** Split `mount -o` options into mount(2) flags and the filesystem's data string. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const option of options) {
    const known = FLAG_OPTIONS[option];
    if (!known) data.push(option);
    else if (known[0]) flags |= known[1];
    else flags &= ~known[1];
  }
  return { flags, data: data.join(',') };
}

/**
 * Mount one spec on `target`. A read-only bind needs a remount, as
 * mount(8) does, because the kernel ignores MS_RDONLY on the first bind.
 */
export function mountSpec(spec: MountSpec, target: string): void {
  const { flags, data } = parseMountOptions(spec.options);
  const type = spec.type === 'bind' || spec.type === 'rbind' ? null : spec.type;
  mount(spec.source, target, type, flags, data || null);
  if (flags & MountFlag.BIND && flags & MountFlag.RDONLY) {
    mount('', target, null, flags | MountFlag.REMOUNT, null);
  }
}

/** Mount every spec on `target`, in order, unmounting what was done if one fails. */
export function mountAll(specs: readonly MountSpec[], target: string): void {
  let done = 0;
  try {
    for (const spec of specs) {
      mountSpec(spec, target);
      done++;
    }
  } catch (err) {
    for (; done > 0; done--) umount(target, UmountFlag.DETACH);
    throw err;
  }
}

/** Unmount everything stacked on `target`; EINVAL (nothing mounted) ends the loop. */
export function unmountAll(target: string): void {
  for (;;) {
    try {
      umount(target, UmountFlag.NOFOLLOW);
    } catch (err) {
      if ((err as { code?: string }).code === 'EINVAL') return;
      throw err;
    }
  }
}
