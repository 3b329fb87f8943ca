import { BerthClient, LeasedClientContext, type SnapshotsClient } from '@berth/client';
import type { CachedImage } from '@berth/image-builder';
import { createReadStream } from 'node:fs';
import type { Engine } from './engines.js';
import type { LayerTar } from './machine-limits.js';
import { readCpuMs } from './process-stats.js';
import { engineAndShimsRssKiB } from './shims.js';
import { median } from './stats.js';
import { checked } from './timed-command.js';

/** The inputs the workloads share, made once per bench run. */
export interface Workload {
  /** Random bytes for the ingest metrics. */
  readonly ingest?: { readonly path: string; readonly digest: string; readonly bytes: number };
  readonly small: CachedImage;
  /** The five-layer-137m preset (not in --quick runs). */
  readonly big?: CachedImage;
  /** `HOST/REPO:TAG` of the pull metric's image, pushed to the bench's own docker-registry. */
  readonly pullRef?: string;
  /** The largest layer of the big image (small with --quick), uncompressed: the file machine limits extract with `tar -x`. */
  readonly layerTar?: LayerTar;
}

export type WorkloadNeed = 'ingest' | 'small' | 'big' | 'registry';

export type Unit = 'ms' | 'MiB';

/** A further row that a metric's samples fill (e.g. the first of several runs, or a later phase). */
export interface AlsoSpec {
  readonly name: string;
  readonly description: string;
  readonly unit: Unit;
}

/** One sample: its time, and the values of the metric's `also` rows (with the engine CPU of their phase, where known). */
export interface Sample {
  readonly ms: number;
  readonly also?: Readonly<Record<string, { readonly value: number; readonly engineCpuMs?: number }>>;
  /** For the progress line. */
  readonly detail?: string;
}

export interface MetricSpec {
  readonly name: string;
  /** What one sample does, in a fresh namespace. */
  readonly description: string;
  /** Set for a metric that cannot run yet: what it waits for. */
  readonly pending?: string;
  /** Set for a metric that runs on berth alone: why containerd is left out. */
  readonly berthOnly?: string;
  readonly needs: readonly WorkloadNeed[];
  /** Bytes one sample moves, for MB/s. */
  bytes?(w: Workload): number;
  /** Rows besides `name` that each sample also fills, in this order after it. */
  readonly also?: readonly AlsoSpec[];
  /** Untimed, in the sample's fresh namespace, before `measure` (and before its CPU is read). */
  prepare?(engine: Engine, namespace: string, w: Workload): Promise<void>;
  /** One sample on `engine` in `namespace`: milliseconds (or a Sample), or throws. */
  measure?(engine: Engine, namespace: string, w: Workload): Promise<number | Sample>;
  /** Untimed, after `measure` (also when `prepare` or `measure` failed), before the namespace is emptied. */
  cleanup?(engine: Engine, namespace: string, w: Workload): Promise<void>;
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not prepared`);
  return value;
}

function importArchive(name: string, preset: 'small' | 'big', unpack: boolean): MetricSpec {
  const image = (w: Workload) => need(preset === 'small' ? w.small : w.big, `the ${preset} image`);
  return {
    name,
    description: `ctr images import${unpack ? ' (with unpack)' : ' --no-unpack'} (${preset === 'small' ? 'small' : 'five-layer-137m'} preset's OCI archive)`,
    needs: [preset],
    bytes: (w) => image(w).result.totalSize,
    measure: async (engine, ns, w) => {
      const archive = need(image(w).ociArchive, 'the OCI archive');
      const args = ['images', 'import', ...(unpack ? [] : ['--no-unpack']), archive];
      return checked(await engine.ctr(ns, args, { timeoutMs: 600_000 }), `ctr images import${unpack ? '' : ' --no-unpack'}`);
    },
  };
}

/** Untimed: the small image, imported with unpack, so that ctr can make containers of it. */
async function importSmall(engine: Engine, ns: string, w: Workload): Promise<void> {
  const archive = need(w.small.ociArchive, 'the small OCI archive');
  checked(await engine.ctr(ns, ['images', 'import', archive], { timeoutMs: 120_000 }), 'ctr images import (preparing the small image)');
}

async function ctrOk(engine: Engine, ns: string, args: readonly string[], what: string): Promise<number> {
  return checked(await engine.ctr(ns, args, { timeoutMs: 120_000 }), what);
}

/** `ctr run --rm IMAGE ID /bin/true`, `runs` times: their median, and the first run alone. */
function runRmTrue(runs: number): MetricSpec {
  return {
    name: 'run-rm-true',
    description: `ctr run --rm IMAGE ID /bin/true: the median of ${runs} runs in the namespace (small image imported untimed)`,
    needs: ['small'],
    also: [
      {
        name: 'run-rm-true-first',
        description: "the first of those runs alone (on berth it also starts the namespace's group shim)",
        unit: 'ms',
      },
    ],
    prepare: importSmall,
    measure: async (engine, ns, w) => {
      const times: number[] = [];
      let firstCpu = 0;
      for (let i = 1; i <= runs; i++) {
        const cpu = readEngineCpu(engine);
        times.push(await ctrOk(engine, ns, ['run', '--rm', w.small.name, `rm-true-${i}`, '/bin/true'], 'ctr run --rm'));
        if (i === 1) firstCpu = readEngineCpu(engine) - cpu;
      }
      return { ms: median(times), also: { 'run-rm-true-first': { value: times[0] as number, engineCpuMs: firstCpu } } };
    },
  };
}

const readEngineCpu = (engine: Engine) => readCpuMs(engine.pid);

const CREATED = 30;
const STARTED = 20;

/**
 * The container lifecycle, one sample: create 30 containers (the main row), start 20 of them
 * detached, read the RSS of the engine and all its shims with the 20 running, then kill, wait
 * for STOPPED, and delete the 20 tasks and their containers. Each phase is its own row.
 */
function lifecycle(): MetricSpec {
  return {
    name: 'containers-create-30',
    description: `ctr containers create IMAGE ID sleep 600, ${CREATED} containers one after another (total; small image imported untimed)`,
    needs: ['small'],
    also: [
      { name: 'tasks-start-20', description: `ctr tasks start -d, ${STARTED} of those containers one after another (total)`, unit: 'ms' },
      {
        name: 'tasks-kill-delete-20',
        description: `ctr tasks kill -s KILL for the ${STARTED}, polling ctr tasks ls until all are STOPPED, then ctr tasks rm and ctr containers rm for each (total)`,
        unit: 'ms',
      },
      {
        name: 'rss-20-running',
        description: `VmRSS of the engine plus all its shim processes (-address = the engine's socket) with the ${STARTED} tasks running`,
        unit: 'MiB',
      },
    ],
    prepare: importSmall,
    measure: async (engine, ns, w) => {
      const ids = Array.from({ length: CREATED }, (_, i) => `c${i + 1}`);
      const started = ids.slice(0, STARTED);
      let create = 0;
      for (const id of ids) create += await ctrOk(engine, ns, ['containers', 'create', w.small.name, id, 'sleep', '600'], 'ctr containers create');

      let cpu = readEngineCpu(engine);
      let start = 0;
      for (const id of started) start += await ctrOk(engine, ns, ['tasks', 'start', '-d', id], 'ctr tasks start -d');
      const startCpu = readEngineCpu(engine) - cpu;

      // Let the shims settle (a runc.v2 shim's start re-execs itself) before reading memory.
      await new Promise((r) => setTimeout(r, 500));
      const rss = engineAndShimsRssKiB(engine.pid, engine.address);

      cpu = readEngineCpu(engine);
      const t0 = process.hrtime.bigint();
      for (const id of started) await ctrOk(engine, ns, ['tasks', 'kill', '-s', 'KILL', id], 'ctr tasks kill');
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ls = await engine.ctr(ns, ['tasks', 'ls'], { timeoutMs: 30_000 });
        checked(ls, 'ctr tasks ls');
        const running = ls.stdout.split('\n').filter((l) => /\s(RUNNING|PAUSED|CREATED|UNKNOWN)\s*$/.test(l));
        if (running.length === 0) break;
        if (Date.now() > deadline) throw new Error(`tasks still running 30 s after kill -s KILL: ${running.join('; ')}`);
      }
      for (const id of started) await ctrOk(engine, ns, ['tasks', 'rm', id], 'ctr tasks rm');
      for (const id of started) await ctrOk(engine, ns, ['containers', 'rm', id], 'ctr containers rm');
      const killDelete = Number(process.hrtime.bigint() - t0) / 1e6;
      const killCpu = readEngineCpu(engine) - cpu;
      return {
        ms: create,
        also: {
          'tasks-start-20': { value: start, engineCpuMs: startCpu },
          'tasks-kill-delete-20': { value: killDelete, engineCpuMs: killCpu },
          'rss-20-running': { value: rss.rssKiB / 1024 },
        },
        detail: `${rss.shims} shim process(es) holding ${(rss.shimRssKiB / 1024).toFixed(1)} MiB, the engine ${((rss.rssKiB - rss.shimRssKiB) / 1024).toFixed(1)} MiB`,
      };
    },
  };
}

/**
 * berth's own client, durable (the daemon fsyncs at commit), under a lease, from the bench
 * process: `ingestFile` (on berthd the file's descriptor goes over the descriptor socket and
 * berthd copies it; containerd gets the same bytes through Content.Write), or `ingest` of a
 * read stream, through Content.Write on both engines.
 */
function clientIngest(name: string, how: 'file' | 'stream'): MetricSpec {
  return {
    name,
    description:
      how === 'file'
        ? '@berth/client ContentClient.ingestFile under a lease (same file): on berthd by descriptor (LocalContent.IngestFile), on containerd through Content.Write'
        : '@berth/client ContentClient.ingest of a read stream under a lease (same file), through the Content.Write stream on both',
    needs: ['ingest'],
    bytes: (w) => need(w.ingest, 'the ingest file').bytes,
    measure: async (engine, ns, w) => {
      const file = need(w.ingest, 'the ingest file');
      const client = new BerthClient({ address: engine.address, namespace: ns });
      try {
        const opts = { expected: file.digest, total: file.bytes };
        const started = process.hrtime.bigint();
        await client.withLease((c) =>
          how === 'file'
            ? c.content.ingestFile(`bench-client-${ns}`, file.path, opts)
            : c.content.ingest(`bench-client-${ns}`, createReadStream(file.path, { highWaterMark: 1024 * 1024 }), opts),
        );
        return Number(process.hrtime.bigint() - started) / 1e6;
      } finally {
        client.close();
      }
    },
  };
}

/** The media type of an uncompressed OCI layer. */
export const LAYER_TAR_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar';

export const APPLY_LAYER_BERTH_ONLY = 'ctr has no command that applies a layer';

type Mounts = Awaited<ReturnType<SnapshotsClient['prepare']>>;

/** What `prepare` left for `measure` and `cleanup`, as far as it got. */
interface ApplyState {
  readonly client: BerthClient;
  lease?: string;
  digest?: string;
  key?: string;
  mounts?: Mounts;
}

/**
 * berth's differ through the Diff service, as a client would use it: the uncompressed layer
 * machine limits extract with `tar -x`, put into the content store and an empty overlayfs
 * snapshot prepared (both under a lease, untimed), then `Diff.Apply` of it onto the snapshot's
 * mounts, timed; the snapshot, the blob and the lease are removed afterwards (untimed).
 */
function applyLayer(name: string): MetricSpec {
  const states = new Map<string, ApplyState>();
  const layerOf = (w: Workload) => need(w.layerTar, 'the uncompressed layer');
  return {
    name,
    description: `@berth/client Diff.Apply of the uncompressed layer the tar -x limit extracts (${LAYER_TAR_MEDIA_TYPE}) onto an empty overlayfs snapshot; blob and snapshot put in place untimed`,
    berthOnly: APPLY_LAYER_BERTH_ONLY,
    needs: [],
    bytes: (w) => layerOf(w).bytes,
    prepare: async (engine, ns, w) => {
      const layer = layerOf(w);
      const state: ApplyState = { client: new BerthClient({ address: engine.address, namespace: ns, timeout: 120_000 }) };
      states.set(ns, state);
      state.lease = (await state.client.leases.create({ expireAfterMs: 60 * 60 * 1000 })).id;
      const leased = new BerthClient(new LeasedClientContext(state.client.context, state.lease));
      const ref = `bench-apply-${ns}`;
      await leased.content.ingestFile(ref, layer.path, { expected: layer.digest, total: layer.bytes });
      state.digest = layer.digest;
      state.mounts = await leased.snapshots.prepare(ref);
      state.key = ref;
    },
    measure: async (_engine, ns, w) => {
      const layer = layerOf(w);
      const state = states.get(ns);
      const mounts = need(state?.mounts, 'the snapshot');
      const client = (state as ApplyState).client;
      const started = process.hrtime.bigint();
      const applied = await client.diff.apply({ mediaType: LAYER_TAR_MEDIA_TYPE, digest: layer.digest, size: layer.bytes }, mounts);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      // An uncompressed layer's diff ID is its own digest.
      if (applied.digest !== layer.digest || applied.size !== layer.bytes) {
        throw new Error(`Diff.Apply answered ${applied.digest} (${applied.size} bytes), not ${layer.digest} (${layer.bytes} bytes)`);
      }
      return { ms, detail: `onto ${mounts.map((m) => m.type).join('+')} mount` };
    },
    cleanup: async (_engine, ns) => {
      const state = states.get(ns);
      if (!state) return;
      states.delete(ns);
      const { client } = state;
      try {
        if (state.key) await client.snapshots.remove(state.key);
        if (state.digest) await client.content.delete(state.digest);
        if (state.lease) await client.leases.delete(state.lease, { sync: true });
      } finally {
        client.close();
      }
    },
  };
}

/**
 * Every metric of the comparison, in the order of the table. `quick` swaps the sizes for a
 * smoke run (16 MiB ingests, the small image everywhere) and leaves out the 137 MB ones.
 */
export function metricCatalogue(quick: boolean): MetricSpec[] {
  const ingestName = quick ? '16m' : '256m';
  const pullName = quick ? 'pull-small-nounpack' : 'pull-137m-nounpack';
  const measured: MetricSpec[] = [
    {
      name: `content-ingest-${ingestName}`,
      description: 'ctr content ingest --expected-digest D REF < FILE (random bytes)',
      needs: ['ingest'],
      bytes: (w) => need(w.ingest, 'the ingest file').bytes,
      measure: async (engine, ns, w) => {
        const file = need(w.ingest, 'the ingest file');
        const r = await engine.ctr(ns, ['content', 'ingest', '--expected-digest', file.digest, `bench-${ns}`], {
          stdinFile: file.path,
          timeoutMs: 600_000,
        });
        return checked(r, 'ctr content ingest');
      },
    },
    importArchive('import-small-nounpack', 'small', false),
    importArchive('import-small-unpack', 'small', true),
    ...(quick ? [] : [importArchive('import-137m-nounpack', 'big', false), importArchive('import-137m-unpack', 'big', true)]),
    {
      name: pullName,
      description: `ctr content fetch --plain-http from a local docker-registry (${quick ? 'small' : 'five-layer-137m'} preset, pushed with skopeo)`,
      needs: ['registry', quick ? 'small' : 'big'],
      bytes: (w) => need(quick ? w.small : w.big, 'the pulled image').result.totalSize,
      measure: async (engine, ns, w) => {
        const ref = need(w.pullRef, 'the registry');
        return checked(await engine.ctr(ns, ['content', 'fetch', '--plain-http', ref], { timeoutMs: 600_000 }), 'ctr content fetch');
      },
    },
    ...(quick
      ? []
      : [
          {
            name: 'pull-137m-unpack',
            description: 'ctr images pull --plain-http (with unpack) from the local docker-registry (five-layer-137m)',
            needs: ['registry', 'big'],
            bytes: (w) => need(w.big, 'the pulled image').result.totalSize,
            measure: async (engine, ns, w) => {
              const ref = need(w.pullRef, 'the registry');
              return checked(await engine.ctr(ns, ['images', 'pull', '--plain-http', ref], { timeoutMs: 600_000 }), 'ctr images pull');
            },
          } satisfies MetricSpec,
        ]),
    applyLayer(quick ? 'apply-layer-small' : 'apply-layer-34m'),
    runRmTrue(quick ? 3 : 10),
    ...(quick ? [] : [lifecycle()]),
    clientIngest(`client-ingest-${ingestName}`, 'file'),
    clientIngest(`client-stream-ingest-${ingestName}`, 'stream'),
  ];
  return measured;
}
