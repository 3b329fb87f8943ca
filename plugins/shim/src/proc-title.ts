import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';

/**
 * Rewrites this process's command line, as `/proc/PID/cmdline` and `ps`
 * show it, to `argv`: in the memory the kernel reads it from (`arg_start` to
 * `arg_end` of `/proc/self/stat`), the way setproctitle(3) does. Node copied
 * its arguments elsewhere at start-up, so nothing reads that memory any
 * more. False, and nothing changed, when `argv` does not fit there or the
 * memory cannot be written.
 */
export function setCommandLine(argv: readonly string[]): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields from the third (state) on, after the command name in parentheses; arg_start is the 48th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[48 - 3]);
    const end = Number(fields[49 - 3]);
    const text = Buffer.from(`${argv.join('\0')}\0`);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end <= start || text.length > end - start) return false;
    const area = Buffer.alloc(end - start); // the rest zeroed: the kernel shows it as empty arguments
    text.copy(area);
    const fd = openSync('/proc/self/mem', 'r+');
    try {
      return writeSync(fd, area, 0, area.length, start) === area.length;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** This process's command line as the kernel shows it. */
export function commandLine(): string[] {
  return readFileSync('/proc/self/cmdline', 'utf8').split('\0').filter(Boolean);
}
