import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseProcCgroup, readCgroupMetrics, readV2Metrics } from './cgroup-metrics.js';
import { watchV2 } from './oom-watcher.js';
import { shimProtoRoot } from './shim-proto.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-cgroup-fixture-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function files(base: string, content: Record<string, string>): void {
  mkdirSync(base, { recursive: true });
  for (const [name, text] of Object.entries(content)) writeFileSync(join(base, name), text);
}

/** Encodes with the real metrics.proto and decodes back: what ctr would read. */
// biome-ignore lint/suspicious/noExplicitAny: a decoded protobuf tree, checked field by field below
function roundTrip(typeName: string, value: Record<string, unknown>): Record<string, any> {
  const type = shimProtoRoot().lookupType(typeName);
  return type.toObject(type.decode(type.encode(type.fromObject(value)).finish()), { longs: String, defaults: false });
}

test('/proc/<pid>/cgroup: per-controller v1 paths on a hybrid host, the 0:: path on a unified one', () => {
  const text = [
    '12:pids:/default/c1',
    '11:memory:/default/c1',
    '10:cpu,cpuacct:/default/c1',
    '9:freezer:/default/c1',
    '1:name=systemd:/default/c1',
    '0::/',
    '',
  ].join('\n');
  assert.deepEqual(parseProcCgroup(text, false), {
    version: 1,
    paths: { pids: '/default/c1', memory: '/default/c1', cpu: '/default/c1', cpuacct: '/default/c1' },
  });
  assert.deepEqual(parseProcCgroup('0::/system.slice/c2\n', true), { version: 2, dir: '/system.slice/c2' });
  assert.equal(parseProcCgroup('', true), undefined);
});

test('cgroup v1 metrics from fixture files, as io.containerd.cgroups.v1.Metrics', () => {
  const root = join(dir, 'v1');
  const path = '/ns/c1';
  files(join(root, 'memory', path), {
    'memory.stat': 'cache 4096\nrss 8192\nmapped_file 0\npgpgin 10\ntotal_cache 4096\ntotal_rss 8192\nhierarchical_memory_limit 33554432\n',
    'memory.usage_in_bytes': '602112\n',
    'memory.limit_in_bytes': '33554432\n',
    'memory.max_usage_in_bytes': '700000\n',
    'memory.failcnt': '0\n',
    'memory.kmem.usage_in_bytes': '100\n',
    'memory.kmem.limit_in_bytes': '9223372036854771712\n',
    'memory.kmem.max_usage_in_bytes': '200\n',
    'memory.kmem.failcnt': '0\n',
    'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  });
  files(join(root, 'cpuacct', path), {
    'cpuacct.usage': '18361142\n',
    'cpuacct.usage_percpu': '4144826 14216316 \n',
    'cpuacct.stat': 'user 1\nsystem 2\n',
  });
  files(join(root, 'cpu', path), { 'cpu.stat': 'nr_periods 5\nnr_throttled 1\nthrottled_time 999\n' });
  files(join(root, 'pids', path), { 'pids.current': '2\n', 'pids.max': 'max\n' });
  files(join(root, 'blkio', path), {
    'blkio.throttle.io_service_bytes': '8:0 Read 4096\n8:0 Write 0\nTotal 4096\n',
    'blkio.throttle.io_serviced': '8:0 Read 1\nTotal 1\n',
  });
  const ref = { version: 1 as const, paths: { memory: path, cpu: path, cpuacct: path, pids: path, blkio: path } };
  const { typeName, value } = readCgroupMetrics(ref, root);
  assert.equal(typeName, 'io.containerd.cgroups.v1.Metrics');
  const m = roundTrip(typeName, value);
  assert.deepEqual(m.pids, { current: '2' });
  assert.deepEqual(m.cpu.usage, { total: '18361142', kernel: '20000000', user: '10000000', perCpu: ['4144826', '14216316'] });
  assert.deepEqual(m.cpu.throttling, { periods: '5', throttledPeriods: '1', throttledTime: '999' });
  assert.equal(m.memory.cache, '4096');
  assert.equal(m.memory.totalRss, '8192');
  assert.equal(m.memory.pgPgIn, '10');
  assert.deepEqual(m.memory.usage, { usage: '602112', limit: '33554432', max: '700000' });
  assert.deepEqual(m.memory.kernel, { usage: '100', limit: '9223372036854771712', max: '200' }, 'exact beyond 2^53');
  assert.equal(m.memory.swap, undefined, 'no memsw files: no swap entry');
  assert.deepEqual(m.memoryOomControl, { oomKill: '2' });
  assert.deepEqual(m.blkio.ioServiceBytesRecursive, [
    { op: 'Read', major: '8', value: '4096' },
    { op: 'Write', major: '8' },
  ]);
});

test('cgroup v2 metrics from fixture files, as io.containerd.cgroups.v2.Metrics', () => {
  const root = join(dir, 'v2');
  files(join(root, 'pod', 'c2'), {
    'pids.current': '3\n',
    'pids.max': '100\n',
    'cpu.stat': 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
    'memory.current': '1048576\n',
    'memory.max': 'max\n',
    'memory.swap.current': '0\n',
    'memory.swap.max': '0\n',
    'memory.stat': 'anon 4096\nfile 8192\nkernel_stack 16384\nslab_reclaimable 1\npgfault 77\nthp_fault_alloc 0\nunknown_key 5\n',
    'memory.events': 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n',
    'io.stat': '8:16 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n',
    'hugetlb.2MB.current': '0\n',
    'hugetlb.2MB.max': 'max\n',
    'hugetlb.2MB.rsvd.current': '0\n',
  });
  const { typeName, value } = readCgroupMetrics({ version: 2, dir: '/pod/c2' }, root);
  assert.equal(typeName, 'io.containerd.cgroups.v2.Metrics');
  const m = roundTrip(typeName, value);
  assert.deepEqual(m.pids, { current: '3', limit: '100' });
  assert.deepEqual(m.cpu, { usageUsec: '1500', userUsec: '1000', systemUsec: '500' });
  assert.equal(m.memory.usage, '1048576');
  assert.equal(m.memory.usageLimit, '18446744073709551615', "'max' is the uint64 maximum, as containerd reports it");
  assert.equal(m.memory.anon, '4096');
  assert.equal(m.memory.kernelStack, '16384');
  assert.equal(m.memory.slabReclaimable, '1');
  assert.equal(m.memory.pgfault, '77');
  assert.deepEqual(m.memoryEvents, { max: '4', oom: '1', oomKill: '1' });
  assert.deepEqual(m.io.usage, [{ major: '8', minor: '16', rbytes: '1024', wbytes: '2048', rios: '1', wios: '2' }]);
  assert.deepEqual(m.hugetlb, [{ pagesize: '2MB', max: '18446744073709551615' }]);
  assert.deepEqual(readV2Metrics(join(root, 'missing')), {}, 'a cgroup that is gone has no metrics');
});

test('cgroup v2 OOM: a rising oom_kill in memory.events is one event each time', async () => {
  const cg = join(dir, 'v2-oom');
  files(cg, { 'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n' });
  let events = 0;
  const w = watchV2(cg, () => events++);
  try {
    await sleep(50);
    writeFileSync(join(cg, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    for (const deadline = Date.now() + 3000; events < 1 && Date.now() < deadline; ) await sleep(20);
    assert.equal(events, 1);
    writeFileSync(join(cg, 'memory.events'), 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
    await sleep(200);
    assert.equal(events, 1, 'other counters moving is no OOM kill');
    writeFileSync(join(cg, 'memory.events'), 'low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n');
    for (const deadline = Date.now() + 3000; events < 2 && Date.now() < deadline; ) await sleep(20);
    assert.equal(events, 2);
    // A kill the watcher has not been told of yet is counted by check(), at once, and only once.
    writeFileSync(join(cg, 'memory.events'), 'low 0\nhigh 0\nmax 6\noom 3\noom_kill 3\n');
    w.check();
    assert.equal(events, 3);
    await sleep(200);
    assert.equal(events, 3);
  } finally {
    w.close();
  }
});
