import { readFileSync } from 'node:fs';

export interface MemoryStats {
  /** VmRSS: resident now, KiB. */
  readonly rssKiB: number;
  /** VmHWM: the peak resident size since the process started, KiB. */
  readonly hwmKiB: number;
}

/** VmRSS and VmHWM from /proc/<pid>/status. */
export function readMemory(pid: number): MemoryStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(m[1]);
  };
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** Linux reports process times in clock ticks of 1/100 s on every architecture berth runs on (USER_HZ). */
const USER_HZ = 100;

/** User plus system CPU time the process has used so far, in milliseconds (10 ms resolution). */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15, that is 11 and 12 after the state field (3).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ;
}

