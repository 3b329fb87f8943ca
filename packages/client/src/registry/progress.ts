export type TransferKind = 'index' | 'manifest' | 'config' | 'layer' | 'blob';
export type TransferStatus = 'waiting' | 'downloading' | 'uploading' | 'exists' | 'done' | 'failed';

/** Where one blob of a pull or push stands. */
export interface TransferProgress {
  readonly digest: string;
  readonly kind: TransferKind;
  readonly status: TransferStatus;
  /** Bytes in place (those from before a resume included). */
  readonly offset: number;
  readonly total: number;
  /** Bytes already ingested when this transfer started (a resumed download); 0 otherwise. */
  readonly resumedFrom: number;
  /** Bytes per second moved by this transfer so far (resumed bytes not counted). */
  readonly rate: number;
  /** Milliseconds since the transfer started moving bytes. */
  readonly elapsed: number;
}

export type ProgressListener = (p: TransferProgress) => void;

/** Tracks one blob and tells a listener; rates are measured from the first byte moved. */
export class TransferTracker {
  private status: TransferStatus = 'waiting';
  private offset = 0;
  private resumedFrom = 0;
  private startedAt = 0;
  private endedAt = 0;

  constructor(
    readonly digest: string,
    readonly kind: TransferKind,
    readonly total: number,
    private readonly listener: ProgressListener | undefined,
  ) {}

  waiting(): void {
    this.emit();
  }

  /** Bytes start moving, from `offset` (a resume) or 0. */
  start(status: 'downloading' | 'uploading', offset: number): void {
    this.status = status;
    this.offset = offset;
    if (!this.startedAt) {
      this.startedAt = Date.now();
      this.resumedFrom = offset;
    }
    this.emit();
  }

  progress(offset: number): void {
    this.offset = offset;
    this.emit();
  }

  end(status: 'exists' | 'done' | 'failed'): void {
    this.status = status;
    if (status !== 'failed') this.offset = this.total;
    this.endedAt = Date.now();
    this.emit();
  }

  snapshot(): TransferProgress {
    const elapsed = this.startedAt ? (this.endedAt || Date.now()) - this.startedAt : 0;
    const moved = Math.max(0, this.offset - this.resumedFrom);
    return {
      digest: this.digest,
      kind: this.kind,
      status: this.status,
      offset: this.offset,
      total: this.total,
      resumedFrom: this.resumedFrom,
      rate: elapsed > 0 ? (moved * 1000) / elapsed : 0,
      elapsed,
    };
  }

  private emit(): void {
    this.listener?.(this.snapshot());
  }
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `512 B`, `1.5 KiB`, `30.0 MiB`. */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** The first 12 hex digits, as docker shows layer ids. */
export function shortDigest(digest: string): string {
  return (digest.split(':')[1] ?? digest).slice(0, 12);
}

/** Something that shows progress: feed it updates, then `finish` once. */
export interface ProgressRenderer {
  readonly listener: ProgressListener;
  finish(): void;
}

/**
 * For logs and pipes: one line per blob moved or found, when it ends
 * (`3f2a1b4c5d6e done 12.3 MiB 45.6 MiB/s`, `… exists 12.3 MiB`).
 * Manifests and indexes, small and many, are left out.
 */
export function lineProgress(write: (text: string) => void): ProgressRenderer {
  return {
    listener: (p) => {
      if (p.kind === 'index' || p.kind === 'manifest') return;
      if (p.status === 'done') {
        const resumed = p.resumedFrom > 0 ? ` (resumed at ${formatBytes(p.resumedFrom)})` : '';
        write(`${shortDigest(p.digest)} done ${formatBytes(p.total)} ${formatRate(p.rate)}${resumed}\n`);
      } else if (p.status === 'exists') write(`${shortDigest(p.digest)} exists ${formatBytes(p.total)}\n`);
    },
    finish: () => {},
  };
}

const BAR = 40;

/**
 * For a terminal: a table redrawn in place (as ctr's pull shows it), one row
 * per blob with its status, a bar, bytes and rate, and a total line.
 * Redraws at most every `intervalMs`, and once more at `finish`.
 */
export function tableProgress(write: (text: string) => void, opts: { title?: string; intervalMs?: number; now?: () => number } = {}): ProgressRenderer {
  const rows = new Map<string, TransferProgress>();
  const now = opts.now ?? Date.now;
  const start = now();
  let drawn = 0;
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  const interval = opts.intervalMs ?? 100;

  const draw = () => {
    timer = undefined;
    last = now();
    const lines: string[] = [];
    if (opts.title) lines.push(opts.title);
    // Short names keep each row within a terminal line, or the cursor arithmetic breaks.
    const names = [...rows.values()].map((p) => `${p.kind} ${shortDigest(p.digest)}`);
    const width = Math.max(0, ...names.map((n) => n.length));
    let i = 0;
    let moved = 0;
    for (const p of rows.values()) {
      const name = (names[i++] ?? '').padEnd(width);
      moved += Math.max(0, p.offset - p.resumedFrom);
      const filled = p.total > 0 ? Math.round((BAR * Math.min(p.offset, p.total)) / p.total) : 0;
      const bar = `|${'+'.repeat(filled)}${'-'.repeat(BAR - filled)}|`;
      const bytes = p.status === 'done' || p.status === 'exists' ? formatBytes(p.total) : `${formatBytes(p.offset)}/${formatBytes(p.total)}`;
      const rate = p.status === 'downloading' || p.status === 'uploading' ? `  ${formatRate(p.rate)}` : '';
      lines.push(`${name}  ${p.status.padEnd(11)} ${bar} ${bytes}${rate}`);
    }
    const secs = (now() - start) / 1000;
    lines.push(`elapsed: ${secs.toFixed(1)} s  total: ${formatBytes(moved)}  (${formatRate(secs > 0 ? moved / secs : 0)})`);
    // Up to the first line we drew, then each line cleared and rewritten.
    const up = drawn > 0 ? `\x1b[${drawn}A` : '';
    write(`${up}${lines.map((l) => `\r\x1b[2K${l}\n`).join('')}`);
    drawn = lines.length;
  };

  return {
    listener: (p) => {
      rows.set(p.digest, p);
      if (timer) return;
      const wait = interval - (now() - last);
      if (wait <= 0) draw();
      else timer = setTimeout(draw, wait);
    },
    finish: () => {
      if (timer) clearTimeout(timer);
      draw();
    },
  };
}
