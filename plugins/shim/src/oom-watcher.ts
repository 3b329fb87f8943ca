import { closeFd, eventfd, type FdWatch, readEventfd, watchReadable } from '@berth/sys';
import { errorMessage, type Logger } from '@berth/plugin-api';
import { closeSync, existsSync, type FSWatcher, openSync, readFileSync, watch, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CgroupRef, CGROUP_ROOT, parseKeyValues, v1Dir } from './cgroup-metrics.js';

interface Watch {
  /** Handles a notification that has come but not been handled yet. */
  check(): void;
  close(): void;
}

/**
 * OOM notifications per container, as the stock shim gets them: on cgroup v1
 * an eventfd registered through `cgroup.event_control` for
 * `memory.oom_control`; on cgroup v2 changes of `memory.events`, counted by
 * its `oom_kill` line. Both are event-driven (uv_poll on the eventfd, inotify
 * through fs.watch), so an idle shim wakes for nothing.
 */
export class OomWatcher {
  private readonly watches = new Map<string, Watch>();

  constructor(
    private readonly log: Logger,
    private readonly root = CGROUP_ROOT,
  ) {}

  /** Starts watching the container's cgroup; `onOom` runs once per OOM event. Failures are logged, not thrown. */
  add(id: string, ref: CgroupRef, onOom: () => void): void {
    this.remove(id);
    try {
      const w = ref.version === 1 ? this.watchV1(ref, onOom) : watchV2(join(this.root, ref.dir), onOom);
      if (w) this.watches.set(id, w);
    } catch (err) {
      this.log.warn('cannot watch for OOM events', { id, error: errorMessage(err) });
    }
  }

  /** Runs `onOom` now for an OOM already signalled whose notification is still pending. */
  check(id: string): void {
    try {
      this.watches.get(id)?.check();
    } catch (err) {
      this.log.warn('cannot check for OOM events', { id, error: errorMessage(err) });
    }
  }

  remove(id: string): void {
    this.watches.get(id)?.close();
    this.watches.delete(id);
  }

  close(): void {
    for (const id of [...this.watches.keys()]) this.remove(id);
  }

  private watchV1(ref: CgroupRef & { version: 1 }, onOom: () => void): Watch | undefined {
    const dir = v1Dir(ref, 'memory', this.root);
    if (!dir || !existsSync(dir)) return undefined;
    const efd = eventfd();
    const deliver = () => {
      if (readEventfd(efd) === 0n) return;
      // The kernel also signals when the cgroup goes away; that is no OOM.
      if (existsSync(dir)) onOom();
    };
    let fdWatch: FdWatch | undefined;
    try {
      const control = openSync(join(dir, 'memory.oom_control'), 'r');
      try {
        writeFileSync(join(dir, 'cgroup.event_control'), `${efd} ${control}`);
      } finally {
        closeSync(control);
      }
      fdWatch = watchReadable(efd, deliver);
      fdWatch.unref();
    } catch (err) {
      fdWatch?.close();
      closeFd(efd);
      throw err;
    }
    const w = fdWatch;
    return {
      check: deliver,
      close() {
        w.close();
        closeFd(efd);
      },
    };
  }
}

/** Counts `oom_kill` in a v2 memory.events file and calls `onOom` when it rises. Exported for fixture tests. */
export function watchV2(dir: string, onOom: () => void): Watch {
  const file = join(dir, 'memory.events');
  const count = () => {
    try {
      return Number(parseKeyValues(readFileSync(file, 'utf8')).get('oom_kill') ?? 0);
    } catch {
      return undefined;
    }
  };
  let last = count() ?? 0;
  const deliver = () => {
    const now = count();
    if (now !== undefined && now > last) {
      last = now;
      onOom();
    }
  };
  const watcher: FSWatcher = watch(file, { persistent: false }, deliver);
  watcher.on('error', () => watcher.close());
  return { check: deliver, close: () => watcher.close() };
}
