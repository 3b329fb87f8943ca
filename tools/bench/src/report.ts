import type { ProfileSummary } from './cpu-profile.js';
import type { EngineName } from './engines.js';
import type { MachineLimits } from './machine-limits.js';
import type { MemoryStats } from './process-stats.js';
import { megabytesPerSecond, type SampleStats } from './stats.js';

export interface EngineResult {
  /** Wall-clock milliseconds of the ctr command(s), one per round that succeeded (MiB where the metric's unit says so). */
  readonly ms: SampleStats;
  /** CPU milliseconds the engine process used during each of those samples (10 ms resolution). */
  readonly engineCpuMs: SampleStats;
  /** CPU milliseconds of the bench process itself: the client's share where the client is @berth/client, ~0 for ctr. */
  readonly benchCpuMs: SampleStats;
  /** MB/s at the median time, where the metric moves a known number of bytes. */
  readonly mbps?: number;
  /** One line per failed round. */
  readonly errors: readonly string[];
}

export interface MetricResult {
  readonly name: string;
  readonly description: string;
  /** measured: samples on both engines; failed: some round failed on an engine; pending: cannot run yet; skipped: not here. */
  readonly status: 'measured' | 'failed' | 'pending' | 'skipped';
  /** For pending: what it waits for; for skipped: why. */
  readonly reason?: string;
  /** Set for a metric measured on berth alone (no containerd result, no ratio): why. */
  readonly berthOnly?: string;
  readonly bytes?: number;
  /** What `ms` holds when it is not milliseconds (rss-20-running: MiB). */
  readonly unit?: 'MiB';
  readonly containerd?: EngineResult;
  readonly berth?: EngineResult;
  /** berth's median over containerd's: above 1, berth is slower. */
  readonly ratio?: number;
}

export interface EngineMemory {
  readonly pid: number;
  /** Right after start-up. */
  readonly idle: MemoryStats;
  /** After the whole workload (every container of the bench deleted by then). */
  readonly afterWorkload: MemoryStats;
  /** The same moment, VmRSS of the engine and the shims still up (berthd's spare), KiB. */
  readonly afterWorkloadWithShims?: { readonly rssKiB: number; readonly shims: number };
}

export interface ClientIngestSummary {
  readonly metric: string;
  readonly bytes: number;
  /** min(SHA-256, fsync'd write): what one durable, verified write could reach on this machine. */
  readonly limitMBps: number;
  readonly goalPercent: number;
  readonly engines: Partial<
    Record<
      EngineName,
      {
        readonly mbps: number;
        readonly percentOfLimit: number;
        /** Medians: wall time, CPU of the client (the bench process) and of the engine. */
        readonly wallMs: number;
        readonly clientCpuMs: number;
        readonly engineCpuMs: number;
      }
    >
  >;
}

/** berth's differ applying one uncompressed layer (Diff.Apply), against `tar -x` of the same file. */
export interface ApplyLayerSummary {
  readonly metric: string;
  /** The uncompressed layer's size (the same file the machine limits extract). */
  readonly bytes: number;
  readonly mediaType: string;
  /** Why containerd is not measured. */
  readonly berthOnly: string;
  /** Medians of berth's samples. */
  readonly mbps: number;
  readonly wallMs: number;
  readonly engineCpuMs: number;
  /** The machine limit: `tar -x` of the same file, its median. */
  readonly tarExtractMBps: number;
  readonly tarExtractMs: number;
  /** berth's median apply time over tar -x's median time: 1 is as fast as tar. */
  readonly ratioToTar: number;
  /** The goal: ratioToTar at most this. */
  readonly goalRatio: number;
  readonly goalMet: boolean;
}

export interface BenchReport {
  readonly date: string;
  readonly options: { readonly rounds: number; readonly quick: boolean; readonly only?: readonly string[]; readonly profile: boolean };
  readonly machine: {
    readonly nproc: number;
    readonly cpuModel: string;
    /** `free -g`'s total. */
    readonly memTotalGiB: number;
    readonly kernel: string;
    /** The filesystem holding the engines' roots, from `df -T`. */
    readonly disk: { readonly device: string; readonly type: string; readonly sizeGiB: number; readonly sameFilesystemForBoth: boolean };
    readonly loadAverageStart: readonly number[];
    readonly loadAverageEnd: readonly number[];
  };
  readonly versions: { readonly containerd: string; readonly ctr: string; readonly node: string; readonly berth: string };
  readonly limits: MachineLimits;
  readonly metrics: readonly MetricResult[];
  readonly clientIngest?: ClientIngestSummary;
  readonly applyLayer?: ApplyLayerSummary;
  readonly memory: { readonly note: string } & Partial<Record<EngineName, EngineMemory>>;
  readonly profile?: {
    readonly file: string;
    /** berthd's whole life: start-up, every sample, every namespace reset. */
    readonly whole: ProfileSummary;
    /** Only while berth's samples of the metric ran. */
    readonly perMetric: Readonly<Record<string, ProfileSummary>>;
    /** The bench process itself (@berth/client) while berth's samples of the client metrics ran. */
    readonly client?: { readonly file: string; readonly perMetric: Readonly<Record<string, ProfileSummary>> };
  };
  /** Seconds from start to report. */
  readonly seconds: number;
}

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 100 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(1)} ms`);
const fmtMiB = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

/** Aligns the columns; a row of two cells (a name and a sentence) only takes part in the first. */
function pad(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) {
    const cells = r.length === 2 ? r.slice(0, 1) : r;
    for (const [i, c] of cells.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function engineCells(e: EngineResult | undefined, unit: 'ms' | 'MiB'): [string, string] {
  if (!e || e.ms.samples.length === 0) return ['—', ''];
  const f = unit === 'MiB' ? (v: number) => `${v.toFixed(1)} MiB` : fmtMs;
  const range = e.ms.samples.length > 1 ? `${f(e.ms.min)}–${f(e.ms.max)}` : '';
  return [f(e.ms.median), range];
}

const cpuCell = (e: EngineResult | undefined) => (e?.engineCpuMs.samples.length ? fmtMs(e.engineCpuMs.median) : '—');

/** The comparison table, machine limits, client ingest, memory and (when profiled) berthd's hot spots, as text. */
export function formatReport(r: BenchReport): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(
    `berth bench ${r.date}: ${r.options.rounds} round(s)${r.options.quick ? ', --quick' : ''}; ${m.nproc} CPU (${m.cpuModel}), ${m.memTotalGiB} GiB, kernel ${m.kernel}, ${m.disk.type} on ${m.disk.device}; load ${m.loadAverageStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  out.push(`containerd ${r.versions.containerd}, berth ${r.versions.berth}, node ${r.versions.node}`);
  out.push('');
  const rows: string[][] = [
    ['metric', 'containerd', 'min–max', 'berth', 'min–max', 'berth/ctd', 'MB/s ctd', 'MB/s berth', 'engine CPU ctd/berth'],
  ];
  const notes: string[] = [];
  const berthOnly: string[] = [];
  for (const x of r.metrics) {
    if (x.status === 'pending' || x.status === 'skipped') {
      rows.push([x.name, `${x.status}: ${x.reason ?? ''}`]);
      continue;
    }
    if (x.berthOnly) berthOnly.push(`  ${x.name}: ${x.berthOnly}`);
    const [cm, cr] = x.berthOnly ? ['berth only', ''] : engineCells(x.containerd, x.unit ?? 'ms');
    const [bm, br] = engineCells(x.berth, x.unit ?? 'ms');
    const cpu = `${cpuCell(x.containerd)} / ${cpuCell(x.berth)}`;
    rows.push([
      x.name,
      cm,
      cr,
      bm,
      br,
      x.ratio === undefined ? '—' : `${x.ratio.toFixed(2)}×`,
      x.containerd?.mbps === undefined ? '' : x.containerd.mbps.toFixed(0),
      x.berth?.mbps === undefined ? '' : x.berth.mbps.toFixed(0),
      x.berthOnly ? `— / ${cpuCell(x.berth)}` : cpu,
    ]);
    for (const [name, e] of [
      ['containerd', x.containerd],
      ['berth', x.berth],
    ] as const) {
      for (const err of e?.errors ?? []) notes.push(`  ${x.name} on ${name}: ${err}`);
    }
  }
  out.push(pad(rows));
  if (berthOnly.length) out.push('', 'measured on berth only:', ...berthOnly);
  if (notes.length) out.push('', 'failed rounds:', ...notes);

  const l = r.limits;
  out.push(
    '',
    'machine limits (MB = 10^6 bytes):',
    `  sha256 (${l.sha256Source}, 1 MiB blocks, one core)   ${l.sha256MBps.toFixed(0)} MB/s`,
    `  fsync'd write (dd ${l.fsyncWriteBytes / 1048576} MiB conv=fsync)        ${l.fsyncWriteMBps.toFixed(0)} MB/s`,
    `  tar -x of a ${(l.tarBytes / 1e6).toFixed(1)} MB uncompressed layer       ${l.tarExtractMBps.toFixed(0)} MB/s (${fmtMs(l.tarExtractMs)})`,
  );

  const a = r.applyLayer;
  if (a) {
    out.push(
      '',
      `berth's differ applying that layer (${a.metric}; goal ≤ ${a.goalRatio.toFixed(1)}× tar -x; berth only: ${a.berthOnly}):`,
      `  Diff.Apply of it as ${a.mediaType} onto an empty overlayfs snapshot, through @berth/client`,
      `  berth      ${a.mbps.toFixed(0).padStart(5)} MB/s = ${a.ratioToTar.toFixed(2)}× tar -x's time (${fmtMs(a.wallMs)} against ${fmtMs(a.tarExtractMs)}, ${a.tarExtractMBps.toFixed(0)} MB/s): goal ${a.goalMet ? 'met' : 'not met'}; engine CPU ${fmtMs(a.engineCpuMs)}`,
    );
  }

  const c = r.clientIngest;
  if (c) {
    out.push('', `berth's own client, durable ingest (${c.metric}; limit = min(sha256, fsync'd write) = ${c.limitMBps.toFixed(0)} MB/s, goal ≥ ${c.goalPercent} %):`);
    for (const [name, e] of Object.entries(c.engines)) {
      out.push(
        `  ${name.padEnd(10)} ${e.mbps.toFixed(0).padStart(5)} MB/s = ${e.percentOfLimit.toFixed(0).padStart(2)} % of the limit; median ${fmtMs(e.wallMs)} wall, CPU: client ${fmtMs(e.clientCpuMs)}, engine ${fmtMs(e.engineCpuMs)}`,
      );
    }
  }

  out.push('', `engine memory (VmRSS; ${r.memory.note}):`);
  for (const name of ['containerd', 'berth'] as const) {
    const e = r.memory[name];
    if (!e) continue;
    out.push(
      `  ${name.padEnd(10)} pid ${String(e.pid).padEnd(8)} after the workload ${fmtMiB(e.afterWorkload.rssKiB).padStart(10)}   idle ${fmtMiB(e.idle.rssKiB).padStart(10)}   peak ${fmtMiB(e.afterWorkload.hwmKiB).padStart(10)}` +
        (e.afterWorkloadWithShims
          ? `   with shims ${fmtMiB(e.afterWorkloadWithShims.rssKiB).padStart(10)} (${e.afterWorkloadWithShims.shims} shim${e.afterWorkloadWithShims.shims === 1 ? '' : 's'})`
          : ''),
    );
  }

  if (r.profile) {
    out.push('', `berthd CPU profile ${r.profile.file}`);
    const hot = (title: string, p: ProfileSummary) => {
      out.push(`  ${title} (${(p.busyMs / 1000).toFixed(2)} s busy of ${(p.totalMs / 1000).toFixed(2)} s)`);
      out.push('    self time:');
      for (const h of p.self) out.push(`    ${h.ms.toFixed(0).padStart(7)} ms ${h.percent.toFixed(1).padStart(5)} %  ${h.where}${h.via ? `  ← ${h.via}` : ''}`);
      out.push("    inclusive, berth's own code:");
      for (const h of p.inclusiveOwn) out.push(`    ${h.ms.toFixed(0).padStart(7)} ms ${h.percent.toFixed(1).padStart(5)} %  ${h.where}`);
    };
    for (const [name, p] of Object.entries(r.profile.perMetric)) hot(`while berth ran ${name}`, p);
    hot('whole run (start-up and namespace resets included)', r.profile.whole);
    if (r.profile.client) {
      out.push('', `client CPU profile (the bench process, @berth/client) ${r.profile.client.file}`);
      for (const [name, p] of Object.entries(r.profile.client.perMetric)) hot(`while it ran ${name} against berthd`, p);
    }
  }
  out.push('', `(${r.seconds.toFixed(0)} s)`);
  return `${out.join('\n')}\n`;
}

/** One engine's samples as an EngineResult. */
export function engineResult(
  ms: SampleStats,
  engineCpuMs: SampleStats,
  benchCpuMs: SampleStats,
  errors: readonly string[],
  bytes: number | undefined,
): EngineResult {
  return {
    ms,
    engineCpuMs,
    benchCpuMs,
    errors,
    ...(bytes !== undefined && ms.samples.length > 0 ? { mbps: megabytesPerSecond(bytes, ms.median) } : {}),
  };
}
