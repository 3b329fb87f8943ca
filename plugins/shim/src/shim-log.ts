import type { LogFields, Logger, LogLevel } from '@berth/plugin-api';
import { appendFileSync, closeSync, constants, openSync, writeSync } from 'node:fs';

/**
 * Where the long-lived shim's log lines go. containerd reads each task's
 * `<bundle>/log` FIFO and copies it to its own log, so a line about a
 * container goes to that container's FIFO, and a line about none to the
 * newest container's. The FIFO is opened per line, non-blocking: a shim
 * never waits for (or keeps a descriptor to) a reader that has gone.
 * BERTH_SHIM_LOG names a file that gets every line as well.
 */
export class ShimLogSink {
  private readonly fifos = new Map<string, string>();
  private readonly file = process.env.BERTH_SHIM_LOG || undefined;

  addContainer(id: string, bundle: string): void {
    this.fifos.delete(id);
    this.fifos.set(id, `${bundle}/log`);
  }

  removeContainer(id: string): void {
    this.fifos.delete(id);
  }

  write(line: string, containerId: string | undefined): void {
    if (this.file) {
      try {
        appendFileSync(this.file, line);
      } catch {}
    }
    const fifo = (containerId && this.fifos.get(containerId)) || [...this.fifos.values()].at(-1);
    if (!fifo) return;
    let fd: number | undefined;
    try {
      fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_APPEND);
      writeSync(fd, line);
    } catch {
      // No reader (ENXIO), a full pipe (EAGAIN) or no FIFO: the line is dropped.
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const LOGRUS_LEVEL: Record<LogLevel, string> = { debug: 'debug', info: 'info', warn: 'warning', error: 'error' };

function quote(value: unknown): string {
  const s = typeof value === 'string' ? value : value instanceof Error ? value.message : JSON.stringify(value);
  return /^[\w./:@-]+$/.test(s ?? '') ? (s as string) : JSON.stringify(s);
}

/** Logs in logrus' text format, as containerd's own shims do, so lines read alike in containerd's log. */
export class ShimLogger implements Logger {
  constructor(
    private readonly sink: ShimLogSink,
    private readonly level: LogLevel,
    private readonly fields: LogFields = {},
  ) {}

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }
  child(fields: LogFields): Logger {
    return new ShimLogger(this.sink, this.level, { ...this.fields, ...fields });
  }

  private log(level: LogLevel, msg: string, extra?: LogFields): void {
    if (ORDER[level] < ORDER[this.level]) return;
    const all = { ...this.fields, ...extra };
    const parts = [`time="${new Date().toISOString()}"`, `level=${LOGRUS_LEVEL[level]}`, `msg=${JSON.stringify(msg)}`];
    for (const [k, v] of Object.entries(all)) if (v !== undefined) parts.push(`${k}=${quote(v)}`);
    parts.push('runtime=io.containerd.berth.v1');
    const id = typeof all.id === 'string' ? all.id : undefined;
    this.sink.write(`${parts.join(' ')}\n`, id);
  }
}
