import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CGROUP_ROOT = '/sys/fs/cgroup';

/** A 64-bit counter: a number while exact, else its decimal string (protobufjs encodes both). */
export type U64 = number | string;

/**
 * Where a container's cgroup is: under each v1 controller, or one v2 directory.
 * Found from /proc/<pid>/cgroup of its init, as the stock shim loads it.
 */
export type CgroupRef =
  | { readonly version: 1; readonly paths: Readonly<Record<string, string>> }
  | { readonly version: 2; readonly dir: string };

/** Controllers whose v1 files the metrics read (and freezer, which runc pauses with). */
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'hugetlb'];

/** Whether this host's cgroups are unified (v2 only); hybrid hosts like this one run runc on v1. */
export function cgroupsUnified(root = CGROUP_ROOT): boolean {
  return existsSync(join(root, 'cgroup.controllers'));
}

/** Parses /proc/<pid>/cgroup into a CgroupRef; undefined when the process is gone. */
export function cgroupOfProcess(pid: number, root = CGROUP_ROOT): CgroupRef | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcCgroup(text, cgroupsUnified(root));
}

export function parseProcCgroup(text: string, unified: boolean): CgroupRef | undefined {
  const paths: Record<string, string> = {};
  let v2: string | undefined;
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first === -1 || second === -1) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (controllers === '') v2 = path;
    else for (const c of controllers.split(',')) if (V1_CONTROLLERS.includes(c)) paths[c] = path;
  }
  if (unified) return v2 === undefined ? undefined : { version: 2, dir: v2 };
  return Object.keys(paths).length > 0 ? { version: 1, paths } : undefined;
}

/** The directory of a v1 controller for a ref (its hierarchy may be co-mounted, e.g. cpu,cpuacct). */
export function v1Dir(ref: CgroupRef & { version: 1 }, controller: string, root = CGROUP_ROOT): string | undefined {
  const path = ref.paths[controller];
  return path === undefined ? undefined : join(root, controller, path);
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** A counter as the kernel prints it; 'max' becomes `max`. */
export function parseU64(text: string | undefined, max: U64 = 0): U64 {
  const t = text?.trim();
  if (!t) return 0;
  if (t === 'max') return max;
  if (!/^\d+$/.test(t)) return 0;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : t;
}

/** `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control). */
export function parseKeyValues(text: string | undefined): Map<string, U64> {
  const out = new Map<string, U64>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out.set(k, parseU64(v));
  }
  return out;
}

const UINT64_MAX = '18446744073709551615';

// ---------------------------------------------------------------------------
// cgroup v1 → io.containerd.cgroups.v1.Metrics

/** memory.stat keys and the v1 MemoryStat fields they fill. */
const V1_MEMORY_STAT: Record<string, string> = {
  cache: 'cache',
  rss: 'rss',
  rss_huge: 'rssHuge',
  mapped_file: 'mappedFile',
  dirty: 'dirty',
  writeback: 'writeback',
  pgpgin: 'pgPgIn',
  pgpgout: 'pgPgOut',
  pgfault: 'pgFault',
  pgmajfault: 'pgMajFault',
  inactive_anon: 'inactiveAnon',
  active_anon: 'activeAnon',
  inactive_file: 'inactiveFile',
  active_file: 'activeFile',
  unevictable: 'unevictable',
  hierarchical_memory_limit: 'hierarchicalMemoryLimit',
  hierarchical_memsw_limit: 'hierarchicalSwapLimit',
  total_cache: 'totalCache',
  total_rss: 'totalRss',
  total_rss_huge: 'totalRssHuge',
  total_mapped_file: 'totalMappedFile',
  total_dirty: 'totalDirty',
  total_writeback: 'totalWriteback',
  total_pgpgin: 'totalPgPgIn',
  total_pgpgout: 'totalPgPgOut',
  total_pgfault: 'totalPgFault',
  total_pgmajfault: 'totalPgMajFault',
  total_inactive_anon: 'totalInactiveAnon',
  total_active_anon: 'totalActiveAnon',
  total_inactive_file: 'totalInactiveFile',
  total_active_file: 'totalActiveFile',
  total_unevictable: 'totalUnevictable',
};

/** USER_HZ, the unit of cpuacct.stat (100 on every Linux ABI in use). */
const USER_HZ = 100;

function memoryEntry(dir: string, prefix: string): Record<string, U64> | undefined {
  const usage = read(join(dir, `${prefix}usage_in_bytes`));
  if (usage === undefined) return undefined;
  return {
    usage: parseU64(usage),
    limit: parseU64(read(join(dir, `${prefix}limit_in_bytes`))),
    max: parseU64(read(join(dir, `${prefix}max_usage_in_bytes`))),
    failcnt: parseU64(read(join(dir, `${prefix}failcnt`))),
  };
}

function blkioEntries(text: string | undefined): object[] {
  const entries: object[] = [];
  for (const line of (text ?? '').split('\n')) {
    const parts = line.trim().split(/\s+/);
    const [dev, a, b] = parts;
    if (!dev?.includes(':')) continue;
    const [major, minor] = dev.split(':').map(Number);
    entries.push(b === undefined ? { major, minor, value: parseU64(a) } : { op: a, major, minor, value: parseU64(b) });
  }
  return entries;
}

/** The cgroup v1 metrics of a container, as the stock shim's cgroups library reads them (missing files are skipped). */
export function readV1Metrics(ref: CgroupRef & { version: 1 }, root = CGROUP_ROOT): Record<string, unknown> {
  const metrics: Record<string, unknown> = {};
  const dir = (c: string) => v1Dir(ref, c, root);

  const pids = dir('pids');
  if (pids && existsSync(pids)) {
    metrics.pids = { current: parseU64(read(join(pids, 'pids.current'))), limit: parseU64(read(join(pids, 'pids.max'))) };
  }

  const cpuacct = dir('cpuacct');
  const cpu = dir('cpu');
  if ((cpuacct && existsSync(cpuacct)) || (cpu && existsSync(cpu))) {
    const stat = parseKeyValues(cpuacct && read(join(cpuacct, 'cpuacct.stat')));
    const perCpu = (read(cpuacct ? join(cpuacct, 'cpuacct.usage_percpu') : '') ?? '')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((v) => parseU64(v));
    const ticks = (k: string) => Number(stat.get(k) ?? 0) * (1e9 / USER_HZ);
    const throttle = parseKeyValues(cpu && read(join(cpu, 'cpu.stat')));
    metrics.cpu = {
      usage: {
        total: parseU64(cpuacct && read(join(cpuacct, 'cpuacct.usage'))),
        kernel: ticks('system'),
        user: ticks('user'),
        perCpu,
      },
      throttling: {
        periods: throttle.get('nr_periods') ?? 0,
        throttledPeriods: throttle.get('nr_throttled') ?? 0,
        throttledTime: throttle.get('throttled_time') ?? 0,
      },
    };
  }

  const memory = dir('memory');
  if (memory && existsSync(memory)) {
    const stat = parseKeyValues(read(join(memory, 'memory.stat')));
    const m: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(V1_MEMORY_STAT)) m[field] = stat.get(key) ?? 0;
    // ctr dereferences usage unconditionally, so it is always there.
    m.usage = memoryEntry(memory, 'memory.') ?? { usage: 0, limit: 0, max: 0, failcnt: 0 };
    const swap = memoryEntry(memory, 'memory.memsw.');
    if (swap) m.swap = swap;
    const kernel = memoryEntry(memory, 'memory.kmem.');
    if (kernel) m.kernel = kernel;
    const kernelTcp = memoryEntry(memory, 'memory.kmem.tcp.');
    if (kernelTcp) m.kernelTcp = kernelTcp;
    metrics.memory = m;
    const oom = parseKeyValues(read(join(memory, 'memory.oom_control')));
    metrics.memoryOomControl = {
      oomKillDisable: oom.get('oom_kill_disable') ?? 0,
      underOom: oom.get('under_oom') ?? 0,
      oomKill: oom.get('oom_kill') ?? 0,
    };
  }

  const blkio = dir('blkio');
  if (blkio && existsSync(blkio)) {
    const cfq = existsSync(join(blkio, 'blkio.io_serviced_recursive'));
    metrics.blkio = cfq
      ? {
          ioServiceBytesRecursive: blkioEntries(read(join(blkio, 'blkio.io_service_bytes_recursive'))),
          ioServicedRecursive: blkioEntries(read(join(blkio, 'blkio.io_serviced_recursive'))),
          ioQueuedRecursive: blkioEntries(read(join(blkio, 'blkio.io_queued_recursive'))),
          ioServiceTimeRecursive: blkioEntries(read(join(blkio, 'blkio.io_service_time_recursive'))),
          ioWaitTimeRecursive: blkioEntries(read(join(blkio, 'blkio.io_wait_time_recursive'))),
          ioMergedRecursive: blkioEntries(read(join(blkio, 'blkio.io_merged_recursive'))),
          ioTimeRecursive: blkioEntries(read(join(blkio, 'blkio.time_recursive'))),
          sectorsRecursive: blkioEntries(read(join(blkio, 'blkio.sectors_recursive'))),
        }
      : {
          ioServiceBytesRecursive: blkioEntries(read(join(blkio, 'blkio.throttle.io_service_bytes'))),
          ioServicedRecursive: blkioEntries(read(join(blkio, 'blkio.throttle.io_serviced'))),
        };
  }

  const hugetlb = dir('hugetlb');
  if (hugetlb && existsSync(hugetlb)) {
    metrics.hugetlb = hugePageSizes(hugetlb, '.usage_in_bytes').map((size) => ({
      pagesize: size,
      usage: parseU64(read(join(hugetlb, `hugetlb.${size}.usage_in_bytes`))),
      max: parseU64(read(join(hugetlb, `hugetlb.${size}.max_usage_in_bytes`))),
      failcnt: parseU64(read(join(hugetlb, `hugetlb.${size}.failcnt`))),
    }));
  }
  return metrics;
}

function hugePageSizes(dir: string, suffix: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.startsWith('hugetlb.') && f.endsWith(suffix) && !f.includes('.rsvd.'))
      .map((f) => f.slice('hugetlb.'.length, -suffix.length))
      .sort();
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------
// cgroup v2 → io.containerd.cgroups.v2.Metrics

/** memory.stat keys that are v2 MemoryStat fields (same names, camelCased by protobufjs). */
const V2_MEMORY_STAT = [
  'anon',
  'file',
  'kernel_stack',
  'slab',
  'sock',
  'shmem',
  'file_mapped',
  'file_dirty',
  'file_writeback',
  'anon_thp',
  'inactive_anon',
  'active_anon',
  'inactive_file',
  'active_file',
  'unevictable',
  'slab_reclaimable',
  'slab_unreclaimable',
  'pgfault',
  'pgmajfault',
  'workingset_refault',
  'workingset_activate',
  'workingset_nodereclaim',
  'pgrefill',
  'pgscan',
  'pgsteal',
  'pgactivate',
  'pgdeactivate',
  'pglazyfree',
  'pglazyfreed',
  'thp_fault_alloc',
  'thp_collapse_alloc',
];

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** The cgroup v2 metrics of the cgroup directory `dir` (absolute), from its interface files. */
export function readV2Metrics(dir: string): Record<string, unknown> {
  const metrics: Record<string, unknown> = {};
  const file = (name: string) => read(join(dir, name));

  const pidsCurrent = file('pids.current');
  if (pidsCurrent !== undefined) metrics.pids = { current: parseU64(pidsCurrent), limit: parseU64(file('pids.max')) };

  const cpuStat = parseKeyValues(file('cpu.stat'));
  if (cpuStat.size > 0) {
    metrics.cpu = {
      usageUsec: cpuStat.get('usage_usec') ?? 0,
      userUsec: cpuStat.get('user_usec') ?? 0,
      systemUsec: cpuStat.get('system_usec') ?? 0,
      nrPeriods: cpuStat.get('nr_periods') ?? 0,
      nrThrottled: cpuStat.get('nr_throttled') ?? 0,
      throttledUsec: cpuStat.get('throttled_usec') ?? 0,
    };
  }

  const memCurrent = file('memory.current');
  if (memCurrent !== undefined) {
    const stat = parseKeyValues(file('memory.stat'));
    const m: Record<string, unknown> = {};
    for (const key of V2_MEMORY_STAT) m[camel(key)] = stat.get(key) ?? 0;
    m.usage = parseU64(memCurrent);
    m.usageLimit = parseU64(file('memory.max'), UINT64_MAX);
    m.swapUsage = parseU64(file('memory.swap.current'));
    m.swapLimit = parseU64(file('memory.swap.max'), UINT64_MAX);
    metrics.memory = m;
  }

  const events = file('memory.events');
  if (events !== undefined) {
    const e = parseKeyValues(events);
    metrics.memoryEvents = {
      low: e.get('low') ?? 0,
      high: e.get('high') ?? 0,
      max: e.get('max') ?? 0,
      oom: e.get('oom') ?? 0,
      oomKill: e.get('oom_kill') ?? 0,
    };
  }

  const io = file('io.stat');
  if (io !== undefined) {
    const usage: object[] = [];
    for (const line of io.split('\n')) {
      const [dev, ...kvs] = line.trim().split(/\s+/);
      if (!dev?.includes(':')) continue;
      const [major, minor] = dev.split(':').map(Number);
      const entry: Record<string, U64> = { major: major ?? 0, minor: minor ?? 0, rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
      for (const kv of kvs) {
        const [k, v] = kv.split('=');
        if (k && k in entry && k !== 'major' && k !== 'minor') entry[k] = parseU64(v);
      }
      usage.push(entry);
    }
    metrics.io = { usage };
  }

  const sizes = hugePageSizes(dir, '.current');
  if (sizes.length > 0) {
    metrics.hugetlb = sizes.map((size) => ({
      pagesize: size,
      current: parseU64(file(`hugetlb.${size}.current`)),
      max: parseU64(file(`hugetlb.${size}.max`), UINT64_MAX),
    }));
  }
  return metrics;
}

/** Metrics for a ref as `{typeName, value}` for an Any: v1 or v2 by the ref's version. */
export function readCgroupMetrics(ref: CgroupRef, root = CGROUP_ROOT): { typeName: string; value: Record<string, unknown> } {
  return ref.version === 1
    ? { typeName: 'io.containerd.cgroups.v1.Metrics', value: readV1Metrics(ref, root) }
    : { typeName: 'io.containerd.cgroups.v2.Metrics', value: readV2Metrics(join(root, ref.dir)) };
}
