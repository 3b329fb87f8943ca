import { declareFlock } from './flock.js';
import { declareMountFunctions } from './mount.js';
import { declareProcessFunctions } from './process.js';
import { declareSpawnFunctions } from './spawn.js';

/**
 * Declares with koffi, now, the libc functions a process that spawns,
 * mounts, locks and reaps calls (koffi parses each prototype at its
 * declaration: 0.1–1.5 ms each, some 5 ms for these), instead of on each
 * one's first call. For a process that waits before its work (berth's spare
 * shim), so that its first container does not pay them.
 */
export function prepareNativeCalls(): void {
  declareProcessFunctions();
  declareSpawnFunctions();
  declareMountFunctions();
  declareFlock();
}
