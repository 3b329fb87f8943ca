import { BerthClient } from '@berth/client';
import type { CachedImage } from '@berth/image-builder';
import { createReadStream } from 'node:fs';
import type { Engine } from './engines.js';
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
}

export type WorkloadNeed = 'ingest' | 'small' | 'big' | 'registry';

export interface MetricSpec {
  readonly name: string;
  /** What one sample does, in a fresh namespace. */
  readonly description: string;
  /** Set for a metric that cannot run yet: what it waits for. */
  readonly pending?: string;
  readonly needs: readonly WorkloadNeed[];
  /** Bytes one sample moves, for MB/s. */
  bytes?(w: Workload): number;
  /** One sample on `engine` in `namespace`: milliseconds, or throws. */
  measure?(engine: Engine, namespace: string, w: Workload): Promise<number>;
}

const UNPACK = 'the snapshot issue: berthd loads no Differ yet (diff-service "requires Differ"), so ctr cannot unpack';
const RUNTIME = 'the runtime issue: tasks, runtime-v2 and containerd-shim-berth-v1';

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} was not prepared`);
  return value;
}

function importArchive(name: string, preset: 'small' | 'big'): MetricSpec {
  const image = (w: Workload) => need(preset === 'small' ? w.small : w.big, `the ${preset} image`);
  return {
    name,
    description: `ctr images import --no-unpack (${preset === 'small' ? 'small' : 'five-layer-137m'} preset's OCI archive)`,
    needs: [preset],
    bytes: (w) => image(w).result.totalSize,
    measure: async (engine, ns, w) => {
      const archive = need(image(w).ociArchive, 'the OCI archive');
      return checked(await engine.ctr(ns, ['images', 'import', '--no-unpack', archive], { timeoutMs: 600_000 }), 'ctr images import');
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
    importArchive('import-small-nounpack', 'small'),
    ...(quick ? [] : [importArchive('import-137m-nounpack', 'big')]),
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
    {
      name: `client-ingest-${ingestName}`,
      description: '@berth/client ContentClient.ingest under a lease (same file), a durable write through the Content.Write stream',
      needs: ['ingest'],
      bytes: (w) => need(w.ingest, 'the ingest file').bytes,
      measure: async (engine, ns, w) => {
        const file = need(w.ingest, 'the ingest file');
        const client = new BerthClient({ address: engine.address, namespace: ns });
        try {
          const started = process.hrtime.bigint();
          await client.withLease((c) =>
            c.content.ingest(`bench-client-${ns}`, createReadStream(file.path, { highWaterMark: 1024 * 1024 }), {
              expected: file.digest,
              total: file.bytes,
            }),
          );
          return Number(process.hrtime.bigint() - started) / 1e6;
        } finally {
          client.close();
        }
      },
    },
  ];
  const pending: MetricSpec[] = [
    { name: 'import-137m-unpack', description: 'ctr images import (with unpack)', pending: UNPACK, needs: [] },
    { name: 'pull-137m-unpack', description: 'ctr images pull --plain-http (with unpack)', pending: UNPACK, needs: [] },
    { name: 'run-rm-true', description: 'ctr run --rm IMAGE ID /bin/true', pending: RUNTIME, needs: [] },
    { name: 'containers-create-30', description: 'ctr containers create, 30 containers', pending: RUNTIME, needs: [] },
    { name: 'tasks-start-20', description: 'ctr tasks start -d, 20 tasks', pending: RUNTIME, needs: [] },
    { name: 'tasks-kill-delete-20', description: 'ctr tasks kill + delete, 20 tasks', pending: RUNTIME, needs: [] },
    { name: 'rss-20-running', description: 'engine RSS with 20 running containers', pending: RUNTIME, needs: [] },
  ];
  return [...measured, ...pending];
}
