import { check, libc } from './libc.js';

const TIOCGWINSZ = 0x5413;
const TIOCSWINSZ = 0x5414;
const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;

type Fns = {
  ioctlSet: (fd: number, request: number, ws: Buffer) => number;
  ioctlGet: (fd: number, request: number, ws: Buffer) => number;
  posixOpenpt: (flags: number) => number;
  grantpt: (fd: number) => number;
  unlockpt: (fd: number) => number;
  ptsname: (fd: number) => string | null;
};
let fns: Fns | undefined;

function f(): Fns {
  if (!fns) {
    const lib = libc();
    fns = {
      ioctlSet: lib.func('int ioctl(int fd, unsigned long request, const uint8_t *ws)'),
      ioctlGet: lib.func('int ioctl(int fd, unsigned long request, _Out_ uint8_t *ws)'),
      posixOpenpt: lib.func('int posix_openpt(int flags)'),
      grantpt: lib.func('int grantpt(int fd)'),
      unlockpt: lib.func('int unlockpt(int fd)'),
      ptsname: lib.func('const char *ptsname(int fd)'),
    } as Fns;
  }
  return fns;
}

export interface WindowSize {
  readonly columns: number;
  readonly rows: number;
}

/** ioctl(TIOCSWINSZ) on a terminal (a pty master resizes its slave and signals SIGWINCH there). */
export function setWindowSize(fd: number, size: WindowSize): void {
  const ws = Buffer.alloc(8); // struct winsize: rows, cols, xpixel, ypixel (unsigned short each)
  ws.writeUInt16LE(size.rows & 0xffff, 0);
  ws.writeUInt16LE(size.columns & 0xffff, 2);
  check('ioctl(TIOCSWINSZ)', f().ioctlSet(fd, TIOCSWINSZ, ws));
}

/** ioctl(TIOCGWINSZ). */
export function getWindowSize(fd: number): WindowSize {
  const ws = Buffer.alloc(8);
  check('ioctl(TIOCGWINSZ)', f().ioctlGet(fd, TIOCGWINSZ, ws));
  return { rows: ws.readUInt16LE(0), columns: ws.readUInt16LE(2) };
}

/** A new pty pair: the master descriptor (close-on-exec) and the slave's path. */
export function openPty(): { master: number; slavePath: string } {
  const master = check('posix_openpt', f().posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  check('grantpt', f().grantpt(master));
  check('unlockpt', f().unlockpt(master));
  const slavePath = f().ptsname(master);
  if (!slavePath) throw new Error('ptsname failed');
  return { master, slavePath };
}
