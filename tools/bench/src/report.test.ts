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
    { name: 'run-rm-true', description: 'ctr run --rm', status: 'pending', reason: 'waits for the runtime issue' },
  ],
  clientIngest: {
    metric: 'client-ingest-256m',
    bytes: 268_435_456,
    limitMBps: 500,
    goalPercent: 70,
    engines: { berth: { mbps: 300, percentOfLimit: 60, wallMs: 895, clientCpuMs: 500, engineCpuMs: 700 } },
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
