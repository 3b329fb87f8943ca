import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { whyNotRunnable } from './bench.js';
import { isAlive } from '@berth/image-builder';
import type { BenchReport } from './report.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The bench CLI; `onStderr` sees its progress lines as they come and may signal it. */
function bench(args: readonly string[], onStderr?: (text: string, pid: number) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      onStderr?.(stderr, child.pid as number);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 110_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const pidsIn = (stderr: string) => [...stderr.matchAll(/(?:containerd|berthd) pid (\d+)/g)].map((m) => Number(m[1]));
const folderIn = (stderr: string) => /working in (\S+)/.exec(stderr)?.[1];

/** PIDs of processes whose command line mentions `text` (e.g. a ctr left talking to a bench socket). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

describe('npm run bench -- --quick, end to end against containerd and berthd', async () => {
  const skip = await whyNotRunnable();
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-bench-test-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('measures every metric of the quick set on both engines and cleans up', { skip, timeout: 120_000 }, async () => {
    const json = join(dir, 'quick.json');
    const started = Date.now();
    const r = await bench(['--quick', '--json', json]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Date.now() - started < 60_000, 'a smoke run takes under a minute');
    const report = JSON.parse(await readFile(json, 'utf8')) as BenchReport;
    const measured = report.metrics.filter((m) => m.status === 'measured').map((m) => m.name);
    assert.deepEqual(measured, [
      'content-ingest-16m',
      'import-small-nounpack',
      'import-small-unpack',
      'pull-small-nounpack',
      'apply-layer-small',
      'run-rm-true',
      'run-rm-true-first',
      'client-ingest-16m',
      'client-stream-ingest-16m',
    ]);
    for (const m of report.metrics.filter((x) => x.status === 'measured')) {
      for (const e of m.berthOnly ? [m.berth] : [m.containerd, m.berth]) {
        assert.equal(e?.ms.samples.length, 1, m.name);
        assert.ok((e?.ms.median ?? 0) > 0, m.name);
      }
      if (m.berthOnly) assert.equal(m.containerd ?? m.ratio, undefined, `${m.name} is berth only`);
      else assert.ok((m.ratio ?? 0) > 0, m.name);
    }
    assert.deepEqual(
      report.metrics.filter((m) => m.berthOnly).map((m) => m.name),
      ['apply-layer-small'],
    );
    // The small preset's busybox layer, the file tar -x extracted, applied by berth's differ.
    const apply = report.applyLayer;
    assert.equal(apply?.metric, 'apply-layer-small');
    assert.equal(apply?.bytes, report.limits.tarBytes);
    assert.ok((apply?.mbps ?? 0) > 0 && (apply?.ratioToTar ?? 0) > 0 && apply?.goalRatio === 2, JSON.stringify(apply));
    assert.deepEqual(
      report.metrics.filter((m) => m.status !== 'measured').map((m) => m.name),
      [],
      'nothing pending any more',
    );
    assert.ok(report.limits.sha256MBps > 0 && report.limits.fsyncWriteMBps > 0 && report.limits.tarExtractMBps > 0);
    assert.ok((report.clientIngest?.engines.berth?.percentOfLimit ?? 0) > 0);
    assert.ok((report.memory.berth?.afterWorkload.rssKiB ?? 0) > 0 && (report.memory.containerd?.afterWorkload.rssKiB ?? 0) > 0);
    assert.match(r.stdout, /^content-ingest-16m\s+\d/m);
    assert.match(r.stdout, /^run-rm-true\s+\d/m);
    assert.match(r.stdout, /^apply-layer-small\s+berth only\s+\d/m);
    assert.match(r.stdout, /^ {2}berth\s+\d+ MB\/s = [\d.]+× tar -x's time/m);

    const pids = pidsIn(r.stderr);
    assert.equal(pids.length, 2, r.stderr);
    for (const pid of pids) assert.equal(isAlive(pid), false, `engine pid ${pid} stopped`);
    const folder = folderIn(r.stderr);
    assert.ok(folder && !existsSync(folder), `${folder} removed`);
    assert.deepEqual(processesMentioning(`${folder}/berthd/berthd.sock`), [], 'no berth shim left behind');
    const containerdSocket = /containerd pid \d+ at (\S+),/.exec(r.stderr)?.[1];
    assert.ok(containerdSocket, r.stderr);
    assert.deepEqual(processesMentioning(containerdSocket), [], 'no runc shim left behind');
  });

  test('SIGINT stops both engines and removes the temporary folder', { skip, timeout: 120_000 }, async () => {
    let sent = false;
    const r = await bench(['--quick'], (stderr, pid) => {
      // Interrupt inside the first metric, with both engines up.
      if (!sent && /content-ingest-16m round 1\/1 containerd/.test(stderr)) {
        sent = true;
        process.kill(pid, 'SIGINT');
      }
    });
    assert.ok(sent, r.stderr);
    assert.equal(r.code, 130, r.stderr);
    const pids = pidsIn(r.stderr);
    assert.equal(pids.length, 2, r.stderr);
    for (const pid of pids) assert.equal(isAlive(pid), false, `engine pid ${pid} stopped`);
    const folder = folderIn(r.stderr);
    assert.ok(folder && !existsSync(folder), `${folder} removed`);
    assert.deepEqual(processesMentioning(folder), [], 'no ctr left behind');
  });
});
