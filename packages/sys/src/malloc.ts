import { libc } from './libc.js';

/** mallopt(3) parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;

let malloptFn: ((param: number, value: number) => number) | undefined;

/**
 * Make glibc give freed memory back to the kernel promptly. A daemon that
 * streams large messages frees many big buffers; glibc's default raises its
 * mmap and trim thresholds after such frees and keeps the memory (berthd held
 * ~190 MiB after importing a 137 MB image, ~130 MiB with these thresholds).
 * Fixed thresholds also turn off that dynamic adjustment.
 */
export function returnFreedMemoryPromptly(thresholdBytes = 128 * 1024): boolean {
  try {
    malloptFn ??= libc().func('int mallopt(int param, int value)') as NonNullable<typeof malloptFn>;
    return malloptFn(M_TRIM_THRESHOLD, thresholdBytes) === 1 && malloptFn(M_MMAP_THRESHOLD, thresholdBytes) === 1;
  } catch {
    return false; // not glibc: nothing to tune
  }
}

let mallocTrimFn: ((pad: number) => number) | undefined;

/**
 * malloc_trim(3): hand every whole free page of glibc's heaps back to the
 * kernel, from the middle of the heap too, not only its top (which is all the
 * trim threshold does). False where this is not glibc.
 */
export function releaseFreeMemory(): boolean {
  try {
    mallocTrimFn ??= libc().func('int malloc_trim(size_t pad)') as NonNullable<typeof mallocTrimFn>;
    mallocTrimFn(0);
    return true;
  } catch {
    return false;
  }
}
