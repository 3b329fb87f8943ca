import { check, libc } from './libc.js';

// Node has no xattr calls; these are the l*/f* variants so no call ever follows a symlink.
type SetFn = (target: string, name: string, value: Uint8Array, size: number, flags: number) => number;
type FSetFn = (fd: number, name: string, value: Uint8Array, size: number, flags: number) => number;
type GetFn = (target: string, name: string, value: Uint8Array | null, size: number) => number;
type ListFn = (target: string, list: Uint8Array | null, size: number) => number;

let lsetFn: SetFn | undefined;
let fsetFn: FSetFn | undefined;
let lgetFn: GetFn | undefined;
let llistFn: ListFn | undefined;

/** Set an xattr on `path` itself (a symlink is not followed). */
export function lsetxattr(path: string, name: string, value: Uint8Array): void {
  lsetFn ??= libc().func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)') as SetFn;
  check('lsetxattr', lsetFn(path, name, value, value.length, 0), `${name} on ${path}`);
}

/** Set an xattr on an open file descriptor. */
export function fsetxattr(fd: number, name: string, value: Uint8Array): void {
  fsetFn ??= libc().func('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)') as FSetFn;
  check('fsetxattr', fsetFn(fd, name, value, value.length, 0), name);
}

/** An xattr of `path` itself, or undefined when it has none of that name. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  lgetFn ??= libc().func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)') as GetFn;
  for (;;) {
    try {
      const size = check('lgetxattr', lgetFn(path, name, null, 0), `${name} on ${path}`);
      const buf = Buffer.alloc(size);
      return buf.subarray(0, check('lgetxattr', lgetFn(path, name, buf, size), `${name} on ${path}`));
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ERANGE') continue; // it grew between the two calls
      if (code === 'ENODATA' || code === 'EOPNOTSUPP') return undefined;
      throw err;
    }
  }
}

/** The xattr names of `path` itself; none where the filesystem has no xattrs. */
export function llistxattr(path: string): string[] {
  llistFn ??= libc().func('intptr_t llistxattr(const char *path, void *list, size_t size)') as ListFn;
  for (;;) {
    try {
      const size = check('llistxattr', llistFn(path, null, 0), path);
      if (size === 0) return [];
      const buf = Buffer.alloc(size);
      const got = check('llistxattr', llistFn(path, buf, size), path);
      return buf.subarray(0, got).toString('utf8').split('\0').filter((n) => n !== '');
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ERANGE') continue;
      if (code === 'EOPNOTSUPP') return [];
      throw err;
    }
  }
}

/** All xattrs of `path` itself, by name, sorted by name. */
export function lgetxattrs(path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of llistxattr(path).sort()) {
    const value = lgetxattr(path, name);
    if (value) out.set(name, value);
  }
  return out;
}

function codeOf(err: unknown): string | undefined {
  return (err as { code?: string }).code;
}
