export interface PacerOptions {
  /** Wait after a deletion before collecting, so a burst of deletions shares one collection. */
  readonly scheduleDelayMs: number;
  /**
   * containerd's `pause_threshold`: collections scheduled by deletions take
   * at most this share of the time (0.02: 20 ms of every second). Clamped to
   * [0, 0.5] as containerd does; 0 means one collection a second at most.
   */
  readonly pauseThreshold: number;
  /** containerd's `deletion_threshold`: this many deletions collect after the delay alone; 0 is off. */
  readonly deletionThreshold: number;
}

/** containerd's gc scheduler defaults for the two thresholds. */
export const CONTAINERD_PACING: Pick<PacerOptions, 'pauseThreshold' | 'deletionThreshold'> = { pauseThreshold: 0.02, deletionThreshold: 0 };

/** containerd's interval before the first collection, and the one a 0 pause threshold keeps. */
const DEFAULT_INTERVAL_MS = 1000;

/**
 * When the next scheduled collection may run: containerd's gc scheduler
 * policy, as arithmetic over a clock the caller passes in (milliseconds).
 *
 * Before any collection, a deletion collects after `scheduleDelayMs`. After
 * one, the next waits until the last ended plus an interval that keeps the
 * collector's average run within `pauseThreshold` of the time
 * (`avg / threshold - avg`; a 3 ms collection allows one per 147 ms), unless
 * `deletionThreshold` deletions have piled up since.
 */
export class GcPacer {
  private readonly threshold: number;
  private totalMs = 0;
  private runs = 0;
  private lastEndMs: number | undefined;
  private deletions = 0;

  constructor(private readonly opts: PacerOptions) {
    this.threshold = Math.min(Math.max(opts.pauseThreshold, 0), 0.5);
  }

  /** A deletion at `now`: the time the collection that sweeps it should start. */
  deleted(now: number): number {
    this.deletions++;
    const soon = now + Math.max(this.opts.scheduleDelayMs, 0);
    if (this.lastEndMs === undefined) return soon;
    if (this.opts.deletionThreshold > 0 && this.deletions >= this.opts.deletionThreshold) return soon;
    return Math.max(soon, this.lastEndMs + this.intervalMs());
  }

  /** A collection starts: the deletions so far are its to sweep. */
  started(): void {
    this.deletions = 0;
  }

  /** A collection that ran for `durationMs` ended at `now`. */
  finished(durationMs: number, now: number): void {
    this.totalMs += durationMs;
    this.runs++;
    this.lastEndMs = now;
  }

  /** The least time between the end of one scheduled collection and the start of the next. */
  intervalMs(): number {
    if (this.runs === 0 || this.threshold === 0) return DEFAULT_INTERVAL_MS;
    const avg = this.totalMs / this.runs;
    return avg / this.threshold - avg;
  }
}
