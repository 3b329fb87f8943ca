import koffi from 'koffi';
import { constants } from 'node:os';

let lib: ReturnType<typeof koffi.load> | undefined;

/** libc, loaded on first use so importing this package costs nothing. */
export function libc(): ReturnType<typeof koffi.load> {
  lib ??= koffi.load('libc.so.6');
  return lib;
}

const names = Object.fromEntries(Object.entries(constants.errno).map(([name, num]) => [num, name]));

/** An errno failure from a system call, with Node's usual `code` (EPERM, EBUSY, …). */
export class SyscallError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail?: string,
  ) {
    const code = names[errno] ?? `errno ${errno}`;
    super(`${syscall}${detail ? ` ${detail}` : ''}: ${code}`);
    this.code = code;
  }
}

/** Call `fn`; a -1 result becomes a SyscallError carrying errno. */
export function check(syscall: string, result: number, detail?: string): number {
  if (result === -1) throw new SyscallError(syscall, koffi.errno(), detail);
  return result;
}
