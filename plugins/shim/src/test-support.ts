import { readFileSync } from 'node:fs';

/** For this package's tests: the process is running, not a zombie that nobody reaped yet. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
