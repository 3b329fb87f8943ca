import { cachedPreset, DOCKER_REGISTRY, isAlive, pushWithSkopeo, startRegistry } from '@berth/image-builder';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, existsSync, openSync, statSync, writeSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { type CpuProfile, readProfile, summarizeProfile } from './cpu-profile.js';
import { berthdMain, type Engine, type EngineName, startBerthdEngine, startContainerdEngine } from './engines.js';
import { type MachineLimits, measureMachineLimits, prepareLayerTar } from './machine-limits.js';
import {
  APPLY_LAYER_BERTH_ONLY,
  LAYER_TAR_MEDIA_TYPE,
  metricCatalogue,
  type MetricSpec,
  type Sample,
  type Unit,
  type Workload,
} from './metrics.js';
import { resetNamespace } from './namespace-reset.js';
import { endShims, engineAndShimsRssKiB } from './shims.js';
import { readCpuMs, readMemory } from './process-stats.js';
import {
  type ApplyLayerSummary,
  type BenchReport,
  type ClientIngestSummary,
  type EngineMemory,
  type EngineResult,
  engineResult,
  type MetricResult,
} from './report.js';
import type { Resources } from './resources.js';
import { summarize } from './stats.js';
import { installed, runTimed } from './timed-command.js';

export interface BenchOptions {
  /** Rounds per metric, each engine once per round (A B A B …). */
  readonly rounds: number;
  /** One round, the small image only, 16 MiB ingests: a smoke run. */
  readonly quick: boolean;
  /** Metric names to run (default: all). */
  readonly only?: readonly string[];
  /** Start berthd with `node --cpu-prof --cpu-prof-dir DIR` and summarize the profile. */
  readonly profileDir?: string;
  /** Progress lines (stderr in the CLI). */
  readonly log: (line: string) => void;
}

/** The durable-ingest goal for berth's own client, as % of min(sha256, fsync'd write). */
export const CLIENT_INGEST_GOAL_PERCENT = 70;

/** The goal for berth's apply of one uncompressed layer: at most this many times `tar -x`'s time. */
export const APPLY_LAYER_GOAL_RATIO = 2;

const MEMORY_NOTE =
  'the engine process alone, no containers running; "with shims" adds the shim processes still up after the workload (berthd\'s spare shim); with 20 running containers, shims included, see rss-20-running';

/** Why the bench cannot run here (undefined when it can). */
export async function whyNotRunnable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'containerd needs root';
  for (const tool of ['containerd', 'ctr']) {
    if (!(await installed(tool))) return `${tool} is not installed (Debian: apt-get install containerd)`;
  }
  if (!existsSync(berthdMain())) return `${berthdMain()} is missing: run npm run build`;
  return undefined;
}

/** Names of every metric of the mode, for --only and the usage text. */
export function metricNames(quick: boolean): string[] {
  return metricCatalogue(quick).map((m) => m.name);
}

async function firstLine(cmd: string, args: readonly string[]): Promise<string | undefined> {
  const r = await runTimed(cmd, args, { timeoutMs: 10_000 }).catch(() => undefined);
  return r?.code === 0 ? r.stdout.trim().split('\n')[0] : undefined;
}

/** `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3` → the version and Debian's. */
async function goToolVersion(cmd: string): Promise<string> {
  return (await firstLine(cmd, ['--version']))?.split(' ').slice(2).join(' ') || 'unknown';
}

async function machineInfo(dir: string, containerdRoot: string) {
  const free = await runTimed('free', ['-g'], { timeoutMs: 10_000 }).catch(() => undefined);
  const memTotalGiB = Number(/^Mem:\s+(\d+)/m.exec(free?.stdout ?? '')?.[1] ?? Number.NaN);
  const df = await runTimed('df', ['-T', '-B1G', dir], { timeoutMs: 10_000 }).catch(() => undefined);
  const [device = '?', type = '?', size = 'NaN'] = (df?.stdout.trim().split('\n')[1] ?? '').split(/\s+/);
  return {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memTotalGiB,
    kernel: release(),
    disk: {
      device,
      type,
      sizeGiB: Number(size),
      sameFilesystemForBoth: statSync(dir).dev === statSync(containerdRoot).dev,
    },
  };
}

/** The checkout berthd runs from: packages/daemon/dist/main.js is three folders down. */
const repoRoot = () => resolve(dirname(berthdMain()), '..', '..', '..');

async function berthRevision(): Promise<string> {
  const repo = repoRoot();
  const rev = (await firstLine('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'])) ?? 'unknown';
  const dirty = await runTimed('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no'], { timeoutMs: 10_000 }).catch(
    () => undefined,
  );
  return `${rev}${dirty?.stdout.trim() ? ' (with uncommitted changes)' : ''}`;
}

/** `bytes` of random data in `path`, written once; answers its sha256 digest. */
function writeRandomFile(path: string, bytes: number): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1024 * 1024);
  const fd = openSync(path, 'w');
  try {
    for (let left = bytes; left > 0; left -= chunk.length) {
      const piece = chunk.subarray(0, Math.min(left, chunk.length));
      randomFillSync(piece);
      hash.update(piece);
      writeSync(fd, piece);
    }
  } finally {
    closeSync(fd);
  }
  return `sha256:${hash.digest('hex')}`;
}

/** The metrics of the mode that `only` names (parseCli has checked the names), or all of them. */
function select(opts: BenchOptions): MetricSpec[] {
  const all = metricCatalogue(opts.quick);
  return opts.only?.length ? all.filter((m) => opts.only?.includes(m.name)) : all;
}

/**
 * Runs the comparison: both engines side by side through the whole run, every selected metric
 * interleaved containerd, berth, containerd, berth … for `rounds` rounds, each sample in a fresh
 * namespace emptied (untimed) before the next. Everything started is handed to `resources`,
 * which the caller closes (also on SIGINT).
 */
export async function runBench(opts: BenchOptions, resources: Resources): Promise<BenchReport> {
  const started = performance.now();
  const loadAverageStart = loadavg();
  const specs = select(opts);
  const runnable = specs.filter((s) => !s.pending);
  const needs = new Set(runnable.flatMap((s) => s.needs));

  const dir = await mkdtemp(join(tmpdir(), 'berth-bench-'));
  resources.add(`folder ${dir}`, () => rm(dir, { recursive: true, force: true }));

  opts.log(`working in ${dir}`);
  opts.log('preparing images (built once, cached under node_modules/.cache/berth-images)');
  const small = await cachedPreset('small', { ociArchive: true });
  const big = opts.quick ? undefined : await cachedPreset('five-layer-137m', { ociArchive: true });
  const ingestBytes = (opts.quick ? 16 : 256) * 1024 * 1024;
  let ingest: Workload['ingest'];
  if (needs.has('ingest')) {
    const path = join(dir, 'ingest.bin');
    opts.log(`writing ${ingestBytes / 1048576} MiB of random bytes to ${path}`);
    ingest = { path, bytes: ingestBytes, digest: writeRandomFile(path, ingestBytes) };
  }

  const skipped = new Map<string, string>();
  let pullRef: string | undefined;
  if (needs.has('registry')) {
    const missing = !existsSync(DOCKER_REGISTRY)
      ? `${DOCKER_REGISTRY} is not installed (apt-get install docker-registry)`
      : !(await installed('skopeo'))
        ? 'skopeo is not installed'
        : undefined;
    if (missing) {
      for (const s of runnable) if (s.needs.includes('registry')) skipped.set(s.name, missing);
    } else {
      const registry = await startRegistry();
      resources.add('docker-registry', () => registry.stop());
      const image = opts.quick ? small : big;
      if (!image) throw new Error('no image to push');
      pullRef = `${registry.host}/berth-test/${opts.quick ? 'busybox' : 'big'}:latest`;
      opts.log(`pushing ${image.name} to ${pullRef} with skopeo`);
      await pushWithSkopeo(image.layoutDir, pullRef);
    }
  }
  // The layer tar -x extracts for the machine limits is also the one berth's differ applies (apply-layer-*).
  const layerTar = await prepareLayerTar(dir, big ?? small);
  const workload: Workload = {
    small,
    ...(big ? { big } : {}),
    ...(ingest ? { ingest } : {}),
    ...(pullRef ? { pullRef } : {}),
    layerTar,
  };

  opts.log(`measuring machine limits (sha256, fsync write, tar -x of ${layerTar.path}, ${layerTar.bytes} bytes)`);
  const limits = await measureMachineLimits(dir, layerTar, { mib: ingestBytes / 1048576, runs: opts.quick ? 1 : 3 });

  opts.log('starting containerd and berthd');
  const containerd = await startContainerdEngine();
  resources.add('containerd', () => containerd.stop());
  const berth = await startBerthdEngine({ dir: join(dir, 'berthd'), ...(opts.profileDir ? { cpuProfileDir: opts.profileDir } : {}) });
  resources.add('berthd', () => berth.stop());
  // Released before the engines stop: any shim a failed round left behind, by PID (only those of these two sockets).
  resources.add('shims', async () => {
    for (const e of [containerd, berth]) await endShims(e.address, undefined, 0);
  });
  const engines: readonly Engine[] = [containerd, berth];
  opts.log(`containerd pid ${containerd.pid} at ${containerd.address}, berthd pid ${berth.pid} at ${berth.address}`);
  const idle = new Map(engines.map((e) => [e.name, readMemory(e.pid)]));

  // The client metrics run @berth/client in this process: profile it too.
  const stopSelfProfile = opts.profileDir ? await startSelfProfile() : undefined;
  const metrics: MetricResult[] = [];
  const berthWindows = new Map<string, [number, number][]>();
  for (const spec of specs) {
    if (spec.pending) {
      metrics.push({ name: spec.name, description: spec.description, status: 'pending', reason: `waits for ${spec.pending}` });
      continue;
    }
    const skip = skipped.get(spec.name);
    if (skip || !spec.measure) {
      metrics.push({ name: spec.name, description: spec.description, status: 'skipped', reason: skip ?? 'nothing to measure' });
      continue;
    }
    const measured = await measureMetric(spec, engines, workload, opts);
    metrics.push(...measured.results);
    berthWindows.set(spec.name, measured.windows.get('berth') ?? []);
  }

  const memory: BenchReport['memory'] & Partial<Record<EngineName, EngineMemory>> = {
    note: MEMORY_NOTE,
    ...Object.fromEntries(
      engines.map((e) => {
        const afterWorkload = readMemory(e.pid);
        const { shims, shimRssKiB } = engineAndShimsRssKiB(e.pid, e.address);
        const afterWorkloadWithShims = { rssKiB: afterWorkload.rssKiB + shimRssKiB, shims };
        return [e.name, { pid: e.pid, idle: idle.get(e.name) ?? afterWorkload, afterWorkload, afterWorkloadWithShims }];
      }),
    ),
  };

  const clientProfile = await stopSelfProfile?.();

  // berthd writes its CPU profile as it exits.
  await resources.release('shims');
  await resources.release('berthd');
  const profile = opts.profileDir ? await summarizeProfiles(opts.profileDir, berth.pid, clientProfile, berthWindows, opts.log) : undefined;
  const clientIngest = clientIngestSummary(metrics, limits);
  const applyLayer = applyLayerSummary(metrics, limits);

  return {
    date: new Date().toISOString(),
    options: {
      rounds: opts.rounds,
      quick: opts.quick,
      ...(opts.only?.length ? { only: [...opts.only] } : {}),
      profile: !!opts.profileDir,
    },
    machine: { ...(await machineInfo(dir, containerd.root)), loadAverageStart, loadAverageEnd: loadavg() },
    versions: {
      containerd: await goToolVersion('containerd'),
      ctr: await goToolVersion('ctr'),
      node: process.version,
      berth: await berthRevision(),
    },
    limits,
    metrics,
    ...(clientIngest ? { clientIngest } : {}),
    ...(applyLayer ? { applyLayer } : {}),
    memory,
    ...(profile ? { profile } : {}),
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * berthd's profile (the newest .cpuprofile in `dir`) as a whole and per metric, and this
 * process's profile for the client metrics, each cut to the windows of berth's samples.
 */
async function summarizeProfiles(
  dir: string,
  berthdPid: number,
  clientProfile: CpuProfile | undefined,
  berthWindows: ReadonlyMap<string, [number, number][]>,
  log: (line: string) => void,
): Promise<BenchReport['profile']> {
  const repo = repoRoot();
  const perMetric = (profile: CpuProfile, names: (name: string) => boolean) =>
    Object.fromEntries(
      [...berthWindows]
        .filter(([name]) => names(name))
        .map(([name, windows]) => [name, summarizeProfile(profile, { repoRoot: repo, top: 10, windows })]),
    );
  let client: NonNullable<BenchReport['profile']>['client'];
  if (clientProfile) {
    const file = join(dir, `bench-client-${process.pid}.cpuprofile`);
    await writeFile(file, JSON.stringify(clientProfile));
    client = { file, perMetric: perMetric(clientProfile, (name) => name.startsWith('client-')) };
  }
  const file = await profileOf(dir, berthdPid);
  if (!file) {
    log(`berthd (pid ${berthdPid}) left no .cpuprofile in ${dir}`);
    return undefined;
  }
  const berthd = await readProfile(file);
  return {
    file,
    whole: summarizeProfile(berthd, { repoRoot: repo, top: 15 }),
    perMetric: perMetric(berthd, () => true),
    ...(client ? { client } : {}),
  };
}

/** The client ingest metric against min(sha256, fsync'd write), per engine. */
function clientIngestSummary(metrics: readonly MetricResult[], limits: MachineLimits): ClientIngestSummary | undefined {
  const metric = metrics.find((m) => m.name.startsWith('client-ingest-'));
  if (!metric?.bytes) return undefined;
  const limitMBps = Math.min(limits.sha256MBps, limits.fsyncWriteMBps);
  const engines: ClientIngestSummary['engines'] = {};
  for (const name of ['containerd', 'berth'] as const) {
    const r = metric[name];
    if (r?.mbps === undefined) continue;
    engines[name] = {
      mbps: r.mbps,
      percentOfLimit: (100 * r.mbps) / limitMBps,
      wallMs: r.ms.median,
      clientCpuMs: r.benchCpuMs.median,
      engineCpuMs: r.engineCpuMs.median,
    };
  }
  return { metric: metric.name, bytes: metric.bytes, limitMBps, goalPercent: CLIENT_INGEST_GOAL_PERCENT, engines };
}

/** berth's apply of the uncompressed layer against `tar -x` of the same file (the machine limit). */
function applyLayerSummary(metrics: readonly MetricResult[], limits: MachineLimits): ApplyLayerSummary | undefined {
  const metric = metrics.find((m) => m.name.startsWith('apply-layer-'));
  const berth = metric?.berth;
  if (!metric?.bytes || berth?.mbps === undefined) return undefined;
  const ratioToTar = berth.ms.median / limits.tarExtractMs;
  return {
    metric: metric.name,
    bytes: metric.bytes,
    mediaType: LAYER_TAR_MEDIA_TYPE,
    berthOnly: APPLY_LAYER_BERTH_ONLY,
    mbps: berth.mbps,
    wallMs: berth.ms.median,
    engineCpuMs: berth.engineCpuMs.median,
    tarExtractMBps: limits.tarExtractMBps,
    tarExtractMs: limits.tarExtractMs,
    ratioToTar,
    goalRatio: APPLY_LAYER_GOAL_RATIO,
    goalMet: ratioToTar <= APPLY_LAYER_GOAL_RATIO,
  };
}

/** Microseconds of CLOCK_MONOTONIC, the clock V8's CPU profiles use. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

interface Samples {
  readonly ms: number[];
  readonly engineCpu: number[];
  readonly benchCpu: number[];
  readonly errors: string[];
  /** When each sample ran, for attributing a CPU profile to the metric. */
  readonly windows: [number, number][];
  /** The values of the metric's `also` rows, per row name. */
  readonly also: Map<string, { readonly values: number[]; readonly engineCpu: number[] }>;
}

const fmtValue = (v: number, unit: Unit) => (unit === 'MiB' ? `${v.toFixed(1)} MiB` : `${v.toFixed(0)} ms`);

async function measureMetric(
  spec: MetricSpec,
  allEngines: readonly Engine[],
  workload: Workload,
  opts: BenchOptions,
): Promise<{ results: MetricResult[]; windows: Map<EngineName, [number, number][]> }> {
  const measure = spec.measure as NonNullable<MetricSpec['measure']>;
  const also = spec.also ?? [];
  const engines = spec.berthOnly ? allEngines.filter((e) => e.name === 'berth') : allEngines;
  const samples = new Map<EngineName, Samples>(
    engines.map((e) => [
      e.name,
      { ms: [], engineCpu: [], benchCpu: [], errors: [], windows: [], also: new Map(also.map((a) => [a.name, { values: [], engineCpu: [] }])) },
    ]),
  );
  for (let round = 1; round <= opts.rounds; round++) {
    for (const engine of engines) {
      if (!isAlive(engine.pid)) throw new Error(`${engine.name} (pid ${engine.pid}) has exited: ${engine.logs().slice(-2000)}`);
      const s = samples.get(engine.name) as Samples;
      const namespace = `${engine.namespacePrefix}-${spec.name}-r${round}`;
      let line: string;
      try {
        await spec.prepare?.(engine, namespace, workload);
        const engineCpu = readCpuMs(engine.pid);
        const benchCpu = process.cpuUsage();
        const from = monotonicUs();
        const result = await measure(engine, namespace, workload);
        s.windows.push([from, monotonicUs()]);
        s.engineCpu.push(readCpuMs(engine.pid) - engineCpu);
        const used = process.cpuUsage(benchCpu);
        s.benchCpu.push((used.user + used.system) / 1000);
        const sample: Sample = typeof result === 'number' ? { ms: result } : result;
        s.ms.push(sample.ms);
        line = `${sample.ms.toFixed(0)} ms`;
        for (const a of also) {
          const v = sample.also?.[a.name];
          if (!v) continue;
          const slot = s.also.get(a.name);
          slot?.values.push(v.value);
          if (v.engineCpuMs !== undefined) slot?.engineCpu.push(v.engineCpuMs);
          line += `, ${a.name} ${fmtValue(v.value, a.unit)}`;
        }
        if (sample.detail) line += ` (${sample.detail})`;
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        s.errors.push(`round ${round}: ${message}`);
        line = `failed: ${message}`;
      }
      try {
        await spec.cleanup?.(engine, namespace, workload);
      } catch (err) {
        s.errors.push(`round ${round}, cleaning up: ${err instanceof Error ? err.message : String(err)}`);
      }
      try {
        await resetNamespace(engine, namespace);
      } catch (err) {
        s.errors.push(`round ${round}, emptying ${namespace}: ${err instanceof Error ? err.message : String(err)}`);
      }
      opts.log(`${spec.name} round ${round}/${opts.rounds} ${engine.name}: ${line}`);
    }
  }
  const bytes = spec.bytes?.(workload);
  const row = (
    name: string,
    description: string,
    unit: Unit,
    pick: (s: Samples) => { values: number[]; engineCpu: number[]; benchCpu: number[] },
    rowBytes: number | undefined,
  ): MetricResult => {
    const results = Object.fromEntries(
      engines.map((e) => {
        const s = samples.get(e.name) as Samples;
        const p = pick(s);
        return [e.name, engineResult(summarize(p.values), summarize(p.engineCpu), summarize(p.benchCpu), s.errors, rowBytes)];
      }),
    ) as Partial<Record<EngineName, EngineResult>>;
    const failed = engines.some((e) => (results[e.name]?.errors.length ?? 0) > 0);
    const ratio = (results.berth?.ms.median ?? Number.NaN) / (results.containerd?.ms.median ?? Number.NaN);
    return {
      name,
      description,
      status: failed ? 'failed' : 'measured',
      ...(spec.berthOnly ? { berthOnly: spec.berthOnly } : {}),
      ...(unit !== 'ms' ? { unit } : {}),
      ...(rowBytes !== undefined ? { bytes: rowBytes } : {}),
      ...(results.containerd ? { containerd: results.containerd } : {}),
      ...(results.berth ? { berth: results.berth } : {}),
      ...(Number.isFinite(ratio) ? { ratio } : {}),
    };
  };
  const results = [
    row(spec.name, spec.description, 'ms', (s) => ({ values: s.ms, engineCpu: s.engineCpu, benchCpu: s.benchCpu }), bytes),
    ...also.map((a) =>
      row(
        a.name,
        a.description,
        a.unit,
        (s) => {
          const slot = s.also.get(a.name);
          return { values: slot?.values ?? [], engineCpu: slot?.engineCpu ?? [], benchCpu: [] };
        },
        undefined,
      ),
    ),
  ];
  return { results, windows: new Map(engines.map((e) => [e.name, (samples.get(e.name) as Samples).windows])) };
}

/** A V8 CPU profile of this process, through the inspector; the function returned stops it. */
async function startSelfProfile(): Promise<() => Promise<CpuProfile>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  // 1 ms, as node --cpu-prof samples berthd.
  await session.post('Profiler.setSamplingInterval', { interval: 1000 });
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    return profile as unknown as CpuProfile;
  };
}

/** The profile node --cpu-prof wrote for `pid` (CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile). */
async function profileOf(dir: string, pid: number): Promise<string | undefined> {
  const name = (await readdir(dir).catch(() => [] as string[])).find((f) => f.startsWith('CPU.') && f.includes(`.${pid}.`) && f.endsWith('.cpuprofile'));
  return name === undefined ? undefined : join(dir, name);
}
