import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BenchReport, engineResult, formatReport } from './report.js';
import { summarize } from './stats.js';

const report: BenchReport = {
  date: '2026-01-01T00:00:00.000Z',
  options: { rounds: 2, quick: false, profile: false },
  machine: {
    nproc: 2,
    cpuModel: 'cpu',
    memTotalGiB: 23,
    kernel: '6.1',
    disk: { device: '/dev/vda', type: 'ext4', sizeGiB: 252, sameFilesystemForBoth: true },
    loadAverageStart: [0.5, 0.4, 0.3],
    loadAverageEnd: [0.6, 0.5, 0.4],
  },
  versions: { containerd: '1.6.20', ctr: '1.6.20', node: 'v20', berth: 'abc' },
  limits: {
    sha256MBps: 1800,
    sha256Source: 'openssl',
    fsyncWriteMBps: 500,
    fsyncWriteBytes: 256 * 1048576,
    tarExtractMBps: 900,
    tarExtractMs: 37.78,
    tarBytes: 34_002_432,
    tarLayer: 'sha256:x',
    runs: 3,
  },
  metrics: [
    {
      name: 'content-ingest-256m',
      description: 'ctr content ingest',
      status: 'measured',
      bytes: 268_435_456,
      containerd: engineResult(summarize([1000, 1200]), summarize([800, 900]), summarize([0, 0]), [], 268_435_456),
      berth: engineResult(summarize([1500, 1700]), summarize([1400, 1500]), summarize([0, 0]), [], 268_435_456),
      ratio: 1.5,
    },
    {
      name: 'import-small-nounpack',
      description: 'ctr images import',
      status: 'failed',
      containerd: engineResult(summarize([40]), summarize([10]), summarize([0]), [], undefined),
      berth: engineResult(summarize([]), summarize([]), summarize([]), ['round 1: ctr images import failed (1): boom'], undefined),
    },
    {
      name: 'apply-layer-34m',
      description: 'Diff.Apply',
      status: 'measured',
      berthOnly: 'ctr has no command that applies a layer',
      bytes: 34_002_432,
      berth: engineResult(summarize([80, 85, 90]), summarize([70, 80, 90]), summarize([0, 0, 0]), [], 34_002_432),
    },
    { name: 'run-rm-true', description: 'ctr run --rm', status: 'pending', reason: 'waits for the runtime issue' },
  ],
  clientIngest: {
    metric: 'client-ingest-256m',
    bytes: 268_435_456,
    limitMBps: 500,
    goalPercent: 70,
    engines: { berth: { mbps: 300, percentOfLimit: 60, wallMs: 895, clientCpuMs: 500, engineCpuMs: 700 } },
  },
  applyLayer: {
    metric: 'apply-layer-34m',
    bytes: 34_002_432,
    mediaType: 'application/vnd.oci.image.layer.v1.tar',
    berthOnly: 'ctr has no command that applies a layer',
    mbps: 400,
    wallMs: 85,
    engineCpuMs: 80,
    tarExtractMBps: 900,
    tarExtractMs: 37.78,
    ratioToTar: 2.25,
    goalRatio: 2,
    goalMet: false,
  },
  memory: {
    note: 'no containers',
    containerd: { pid: 10, idle: { rssKiB: 40_000, hwmKiB: 41_000 }, afterWorkload: { rssKiB: 45_000, hwmKiB: 50_000 } },
  },
  seconds: 12,
};

test('the table shows medians, ranges, ratio, MB/s and engine CPU', () => {
  const text = formatReport(report);
  const row = text.split('\n').find((l) => l.startsWith('content-ingest-256m')) ?? '';
  assert.match(row, /1100 ms\s+1000 ms–1200 ms\s+1600 ms\s+1500 ms–1700 ms\s+1\.50×\s+244\s+168\s+850 ms \/ 1450 ms/);
});

test('failed rounds, pending metrics and the other sections are spelled out', () => {
  const text = formatReport(report);
  assert.match(text, /^run-rm-true\s+pending: waits for the runtime issue$/m);
  assert.match(text, /import-small-nounpack on berth: round 1: ctr images import failed \(1\): boom/);
  assert.match(text, /sha256 \(openssl.*1800 MB\/s/);
  assert.match(text, /fsync'd write \(dd 256 MiB conv=fsync\)\s+500 MB\/s/);
  assert.match(text, /berth\s+300 MB\/s = 60 % of the limit; median 895 ms wall, CPU: client 500 ms, engine 700 ms/);
  assert.match(text, /containerd pid 10\s+after the workload\s+43\.9 MiB/);
});

test('a berth-only metric: no containerd figures, no ratio, and the reason under the table', () => {
  const text = formatReport(report);
  const row = text.split('\n').find((l) => l.startsWith('apply-layer-34m')) ?? '';
  assert.match(row, /^apply-layer-34m\s+berth only\s+85\.0 ms\s+80\.0 ms–90\.0 ms\s+—\s+400\s+— \/ 80\.0 ms$/);
  assert.match(text, /^measured on berth only:\n {2}apply-layer-34m: ctr has no command that applies a layer$/m);
});

test("berth's apply of the layer is reported next to tar -x, against the 2× goal", () => {
  const text = formatReport(report);
  assert.match(text, /tar -x of a 34\.0 MB uncompressed layer\s+900 MB\/s \(37\.8 ms\)/);
  assert.match(
    text,
    /^berth's differ applying that layer \(apply-layer-34m; goal ≤ 2\.0× tar -x; berth only: ctr has no command that applies a layer\):$/m,
  );
  assert.match(text, /Diff\.Apply of it as application\/vnd\.oci\.image\.layer\.v1\.tar onto an empty overlayfs snapshot/);
  assert.match(text, /berth\s+400 MB\/s = 2\.25× tar -x's time \(85\.0 ms against 37\.8 ms, 900 MB\/s\): goal not met; engine CPU 80\.0 ms/);
  // After the machine limits, before the client ingest.
  assert.ok(text.indexOf('tar -x of a') < text.indexOf("berth's differ"));
  assert.ok(text.indexOf("berth's differ") < text.indexOf("berth's own client"));
});
