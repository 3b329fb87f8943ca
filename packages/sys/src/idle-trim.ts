import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { releaseFreeMemory } from './malloc.js';

// node:vm is loaded when first needed and `performance` is the global one: a process started from
// a V8 start-up snapshot (berth's shim) loads this module at build time, where node warns that
// those two built-ins may come back out of step with the running process.
const require = createRequire(import.meta.url);

export interface IdleTrimOptions {
  /** How often to look, ms. */
  readonly intervalMs?: number;
  /** The event loop counts as idle below this utilisation over one interval (0..1). */
  readonly idleBelow?: number;
  /** Trim after a busy interval, or when the resident set grew by this much since the last trim, bytes. */
  readonly growthBytes?: number;
  /** Told what each trim did, for the log. */
  readonly onTrim?: (before: number, after: number) => void;
}

export interface IdleTrim {
  stop(): void;
  /** One trim now: a full garbage collection, then malloc_trim. Returns the RSS after it. */
  trimNow(): number;
}

let gcOnce: (() => void) | null | undefined;

/**
 * V8's gc() without starting node with --expose-gc: the flag also works once set at run time, in a
 * new context. Made once per process (node:vm's first load and a context cost a few ms).
 */
function exposedGc(): (() => void) | undefined {
  if (gcOnce === undefined) gcOnce = makeGc() ?? null;
  return gcOnce ?? undefined;
}

/**
 * Does now what {@link trimMemoryWhenIdle}'s first call would otherwise do: load node:vm and make
 * the gc() it uses. For a process that waits for work (berth's spare shim) and starts trimming
 * once the work comes.
 */
export function prepareIdleTrim(): void {
  exposedGc();
}

/**
 * A full garbage collection, then malloc_trim: what a trim does, once, now. Returns the resident
 * set size after it, bytes.
 */
export function trimMemoryNow(): number {
  exposedGc()?.();
  releaseFreeMemory();
  return process.memoryUsage.rss();
}

function makeGc(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const { runInNewContext } = require('node:vm') as typeof import('node:vm');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A long-lived process that streams large messages ends a burst of work with
 * tens of MiB it no longer uses: V8 keeps the grown heap until memory is
 * short, and glibc keeps freed pages that are not at the top of its heap
 * (berthd: 150 MiB after importing a 137 MB image twice and ingesting 256 MiB
 * twice, 93 MiB after a malloc_trim). So once the event loop has been at
 * least half idle over an interval, after a busier one or after the resident
 * set grew by 16 MiB since the last trim, collect garbage and trim. Not while busy: the freed
 * pages would only fault back in. "Half idle" rather than "idle" because a
 * daemon serving a steady trickle of requests (containers starting one after
 * another) is never fully idle, and would otherwise keep what a pull before
 * left behind (berthd at 180-190 MiB with 20 containers running after the
 * bench's content workload). A trim costs a full GC, some 10-30 ms, at most
 * once per interval and only after such growth. The timer is unref'd and
 * never keeps the process alive.
 */
export function trimMemoryWhenIdle(opts: IdleTrimOptions = {}): IdleTrim {
  const intervalMs = opts.intervalMs ?? 1000;
  const idleBelow = opts.idleBelow ?? 0.5;
  const growthBytes = opts.growthBytes ?? 16 * 1024 * 1024;
  let baseline = process.memoryUsage.rss();
  /** An interval at or over `idleBelow` came since the last trim: a burst, whose leftovers a trim returns. */
  let burst = false;
  let last = performance.eventLoopUtilization();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    if (busy >= idleBelow) {
      burst = true;
      return;
    }
    const before = process.memoryUsage.rss();
    if (!burst && before < baseline + growthBytes) return;
    burst = false;
    baseline = trimMemoryNow();
    opts.onTrim?.(before, baseline);
  }, intervalMs);
  timer.unref();
  return {
    stop: () => clearInterval(timer),
    trimNow: trimMemoryNow,
  };
}
