import type { ProcessIO, StdioPaths } from './process-io.js';

export type ProcessStatus = 'created' | 'running' | 'paused' | 'pausing' | 'stopped' | 'deleted';

/** containerd.v1.types.Status numbers. */
export const STATUS_NUMBER: Record<ProcessStatus, number> = {
  created: 1,
  running: 2,
  stopped: 3,
  paused: 4,
  pausing: 5,
  deleted: 0,
};

/**
 * One process of a container: its init (execId '') or an exec. Kept small:
 * a shim holds one per running process of every container in its group.
 */
export class ShimProcess {
  pid = 0;
  status: ProcessStatus = 'created';
  exitStatus = 0;
  exitedAt: Date | undefined;
  io: ProcessIO | undefined;
  /** An exit that arrived while Start was still publishing /tasks/start: handled right after. */
  deferredExit: { status: number } | undefined;
  starting = false;
  /** An exec's OCI process spec (JSON), until it is started. */
  spec: string | undefined;
  private exited: Promise<void> | undefined;
  private resolveExited: (() => void) | undefined;

  constructor(
    readonly execId: string,
    readonly stdio: StdioPaths,
  ) {}

  get isInit(): boolean {
    return this.execId === '';
  }

  /** Settles when the process has exited (or was deleted without running). */
  waitExit(): Promise<void> {
    if (this.status === 'stopped' || this.status === 'deleted') return Promise.resolve();
    this.exited ??= new Promise((resolve) => {
      this.resolveExited = resolve;
    });
    return this.exited;
  }

  setExited(status: number, at = new Date()): void {
    this.status = 'stopped';
    this.exitStatus = status;
    this.exitedAt = at;
    this.release();
  }

  /** Wakes waiters whatever the state (delete of a process that never ran). */
  release(): void {
    this.resolveExited?.();
    this.resolveExited = undefined;
    this.exited = undefined;
  }
}
