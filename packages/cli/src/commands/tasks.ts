import {
  attachProcess,
  type CgroupV1Metrics,
  type CgroupV2Metrics,
  containerSpec,
  deleteProcess,
  deleteTask,
  execProcess,
  parseSignal,
  STOP_SIGNAL_LABEL,
  startTask,
  type TaskMetric,
} from '@berth/client';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { formatTable } from '../format.js';
import { exitWith, ownsProcess, processStreams } from './run.js';

/** `berth tasks ls`: TASK PID STATUS, as ctr. */
export async function listTasks(ctx: CommandContext, opts: { quiet?: boolean } = {}): Promise<void> {
  const tasks = (await ctx.client.tasks.list()).sort((a, b) => a.id.localeCompare(b.id));
  if (opts.quiet) {
    for (const t of tasks) ctx.out(t.id);
    return;
  }
  ctx.io.stdout(
    formatTable(
      ['TASK', 'PID', 'STATUS'],
      tasks.map((t) => [t.id, String(t.pid), t.status.toUpperCase()]),
    ),
  );
}

export interface StartFlags {
  readonly detach?: boolean;
  readonly interactive?: boolean;
  readonly nullIo?: boolean;
  readonly fifoDir?: string;
}

/** `berth tasks start ID`: start the container's task; unless -d, wait and exit with its status. */
export async function startTaskCommand(ctx: CommandContext, id: string, flags: StartFlags = {}): Promise<void> {
  const streams = processStreams(ctx);
  const container = await ctx.client.containers.get(id);
  const tty = !!containerSpec(container).process?.terminal;
  const handle = await startTask(ctx.client, container, {
    streams: flags.interactive || tty ? streams : { stdout: streams.stdout, stderr: streams.stderr },
    stdin: !!flags.interactive,
    ...(flags.detach ? { detach: true } : {}),
    ...(flags.nullIo ? { nullIO: true } : {}),
    ...(flags.fifoDir ? { fifoRoot: flags.fifoDir } : {}),
  });
  if (flags.detach) {
    handle.detach();
    return;
  }
  try {
    const status = await handle.waitInForeground({ streams, forwardSignals: ownsProcess(ctx) });
    exitWith(ctx, status.exitStatus);
  } finally {
    await handle.delete().catch(() => {});
  }
}

/**
 * `berth tasks attach ID`: copy the process's output here and our input to
 * it until it exits; exits with its status and then, as ctr, deletes the
 * task. Interrupting this client leaves the task running.
 */
export async function attachTask(ctx: CommandContext, id: string): Promise<void> {
  const streams = processStreams(ctx);
  const handle = await attachProcess(ctx.client, id, { streams });
  const status = await handle.waitInForeground({ streams, forwardSignals: ownsProcess(ctx) });
  await handle.delete().catch(() => {});
  exitWith(ctx, status.exitStatus);
}

export interface KillFlags {
  readonly signal?: string;
  readonly all?: boolean;
  readonly execId?: string;
}

/** `berth tasks kill [-s SIG] [--all | --exec-id ID] ID`: default signal is the container's stop signal, else SIGTERM. */
export async function killTask(ctx: CommandContext, id: string, flags: KillFlags = {}): Promise<void> {
  if (flags.all && flags.execId) throw new UsageError('specify an exec-id or all; not both');
  let signal = flags.signal;
  if (!signal) {
    const container = await ctx.client.containers.get(id);
    signal = container.labels[STOP_SIGNAL_LABEL] || 'SIGTERM';
  }
  await ctx.client.tasks.kill(id, parseSignal(signal), { ...(flags.all ? { all: true } : {}), ...(flags.execId ? { execId: flags.execId } : {}) });
}

export interface ExecFlags {
  readonly execId: string;
  readonly tty?: boolean;
  readonly detach?: boolean;
  readonly interactive?: boolean;
  readonly cwd?: string;
  readonly user?: string;
  readonly env?: string[];
  readonly fifoDir?: string;
}

/** `berth tasks exec --exec-id ID [-t] [-d] CONTAINER CMD…`: exits with the process's status. */
export async function execCommand(ctx: CommandContext, id: string, args: readonly string[], flags: ExecFlags): Promise<void> {
  if (args.length === 0) throw new UsageError('exec needs a command');
  const streams = processStreams(ctx);
  const handle = await execProcess(ctx.client, id, flags.execId, args, {
    streams: flags.interactive || flags.tty ? streams : { stdout: streams.stdout, stderr: streams.stderr },
    stdin: !!flags.interactive,
    ...(flags.tty ? { tty: true } : {}),
    ...(flags.detach ? { detach: true } : {}),
    ...(flags.cwd ? { cwd: flags.cwd } : {}),
    ...(flags.user ? { user: flags.user } : {}),
    ...(flags.env ? { env: flags.env } : {}),
    ...(flags.fifoDir ? { fifoRoot: flags.fifoDir } : {}),
  });
  if (flags.detach) {
    handle.detach();
    return;
  }
  try {
    const status = await handle.waitInForeground({ streams, forwardSignals: ownsProcess(ctx) });
    exitWith(ctx, status.exitStatus);
  } finally {
    await handle.delete().catch(() => {});
  }
}

/** `berth tasks ps ID`: PID INFO, as ctr (an exec's processes show their exec id). */
export async function listProcesses(ctx: CommandContext, id: string): Promise<void> {
  const pids = await ctx.client.tasks.listPids(id);
  ctx.io.stdout(
    formatTable(
      ['PID', 'INFO'],
      pids.map((p) => [String(p.pid), p.execId ? `&ProcessDetails{ExecID:${p.execId},XXX_unrecognized:[],}` : p.info ? p.info.typeUrl : '-']),
    ),
  );
}

/** Go's time.Time String() as ctr prints metric timestamps (UTC, to the millisecond here). */
function goTimeString(d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)} +0000 UTC`;
}

const goSlice = (values: readonly number[]) => `[${values.join(' ')}]`;

function metricRows(v1: CgroupV1Metrics | undefined, v2: CgroupV2Metrics | undefined): string[][] {
  const rows: string[][] = [];
  if (v1) {
    if (v1.memory) {
      rows.push(['memory.usage_in_bytes', String(v1.memory.usage?.usage ?? 0)]);
      rows.push(['memory.limit_in_bytes', String(v1.memory.usage?.limit ?? 0)]);
      rows.push(['memory.stat.cache', String(v1.memory.totalCache ?? 0)]);
    }
    if (v1.cpu) {
      rows.push(['cpuacct.usage', String(v1.cpu.usage?.total ?? 0)]);
      rows.push(['cpuacct.usage_percpu', goSlice(v1.cpu.usage?.perCpu ?? [])]);
    }
    if (v1.pids) {
      rows.push(['pids.current', String(v1.pids.current)]);
      rows.push(['pids.limit', String(v1.pids.limit)]);
    }
  } else if (v2) {
    if (v2.pids) {
      rows.push(['pids.current', String(v2.pids.current)]);
      rows.push(['pids.limit', String(v2.pids.limit)]);
    }
    if (v2.cpu) {
      rows.push(['cpu.usage_usec', String(v2.cpu.usageUsec)]);
      rows.push(['cpu.user_usec', String(v2.cpu.userUsec)]);
      rows.push(['cpu.system_usec', String(v2.cpu.systemUsec)]);
      rows.push(['cpu.nr_periods', String(v2.cpu.nrPeriods)]);
      rows.push(['cpu.nr_throttled', String(v2.cpu.nrThrottled)]);
      rows.push(['cpu.throttled_usec', String(v2.cpu.throttledUsec)]);
    }
    if (v2.memory) {
      rows.push(['memory.usage', String(v2.memory.usage)]);
      rows.push(['memory.usage_limit', String(v2.memory.usageLimit)]);
      rows.push(['memory.swap_usage', String(v2.memory.swapUsage)]);
      rows.push(['memory.swap_limit', String(v2.memory.swapLimit)]);
    }
  }
  return rows;
}

/** `berth tasks metrics [--format table|json] ID`, as ctr. */
export async function taskMetrics(ctx: CommandContext, id: string, opts: { format?: 'table' | 'json' } = {}): Promise<void> {
  const m: TaskMetric = await ctx.client.tasks.metric(id);
  if (!m.cgroupV1 && !m.cgroupV2) throw new Error(`cannot decode metric data of type ${m.data?.typeUrl ?? '(none)'}`);
  if (opts.format === 'json') {
    ctx.out(JSON.stringify(m.cgroupV1 ?? m.cgroupV2, null, 2));
    return;
  }
  ctx.io.stdout(`${formatTable(['ID', 'TIMESTAMP'], [[m.id, goTimeString(m.timestamp)]])}\n`);
  ctx.io.stdout(formatTable(['METRIC', 'VALUE'], metricRows(m.cgroupV1, m.cgroupV2)));
}

/**
 * `berth tasks rm [-f] ID…`: delete stopped tasks (with -f, kill running
 * ones first). With --exec-id, delete that exec process and exit with its status.
 */
export async function removeTasks(ctx: CommandContext, ids: readonly string[], flags: { force?: boolean; execId?: string } = {}): Promise<void> {
  if (flags.execId) {
    const [id] = ids;
    if (!id || ids.length > 1) throw new UsageError('--exec-id takes one container id');
    if (flags.force) {
      const p = await ctx.client.tasks.get(id, { execId: flags.execId });
      if (p.status !== 'stopped') {
        const exit = ctx.client.tasks.wait(id, { execId: flags.execId });
        await ctx.client.tasks.kill(id, 'SIGKILL', { execId: flags.execId });
        await exit;
      }
    }
    const deleted = await deleteProcess(ctx.client, id, flags.execId);
    exitWith(ctx, deleted.exitStatus);
    return;
  }
  for (const id of ids) {
    try {
      const deleted = await deleteTask(ctx.client, id, { force: !!flags.force });
      if (deleted.exitStatus !== 0) ctx.io.stderr(`berth: task ${id} exited with non-zero exit code ${deleted.exitStatus}\n`);
    } catch (err) {
      ctx.report(err);
    }
  }
}

function signalOption(value: string): string {
  try {
    parseSignal(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerTasks(program: Command, ctx: CommandContext): void {
  const tasks = program.command('tasks').aliases(['t', 'task']).description('manage tasks').enablePositionalOptions();
  tasks
    .command('list')
    .alias('ls')
    .description('list tasks')
    .option('-q, --quiet', 'print only the task ids')
    .action((opts: { quiet?: boolean }) => listTasks(ctx, opts));
  tasks
    .command('start')
    .description("start a container's task; unless -d, exits with its status")
    .argument('<id>', 'container id')
    .option('-d, --detach', 'return once started')
    .option('-i, --interactive', 'copy stdin to the task')
    .option('--null-io', 'send all of its output to /dev/null')
    .option('--fifo-dir <dir>', 'folder for the stdio FIFOs')
    .action((id: string, flags: StartFlags) => startTaskCommand(ctx, id, flags));
  tasks
    .command('attach')
    .description("attach to a task's stdio until it exits; exits with its status")
    .argument('<id>', 'container id')
    .action((id: string) => attachTask(ctx, id));
  tasks
    .command('kill')
    .description('signal a task (default: its stop signal, else SIGTERM)')
    .argument('<id>', 'container id')
    .option('-s, --signal <signal>', 'signal name or number', signalOption)
    .option('-a, --all', 'signal every process of the task')
    .option('--exec-id <id>', 'signal this exec process')
    .action((id: string, flags: KillFlags) => killTask(ctx, id, flags));
  tasks
    .command('exec')
    .description('run another process in a task; exits with its status (flags go before CONTAINER)')
    .argument('<id>', 'container id')
    .argument('<command...>', 'command and arguments')
    .requiredOption('--exec-id <id>', 'id of the new process')
    .option('-t, --tty', 'allocate a terminal')
    .option('-d, --detach', 'return once started')
    .option('-i, --interactive', 'copy stdin to the process')
    .option('--cwd <dir>', 'working directory')
    .option('-u, --user <user>', 'user[:group] (names resolved in the container)')
    .option('--env <K=V>', 'add an environment variable (repeatable)', collect)
    .option('--fifo-dir <dir>', 'folder for the stdio FIFOs')
    .passThroughOptions()
    .action((id: string, args: string[], flags: ExecFlags) => execCommand(ctx, id, args, flags));
  tasks
    .command('ps')
    .description("list a task's processes")
    .argument('<id>', 'container id')
    .action((id: string) => listProcesses(ctx, id));
  tasks
    .command('pause')
    .description('pause a task')
    .argument('<id>', 'container id')
    .action((id: string) => ctx.client.tasks.pause(id));
  tasks
    .command('resume')
    .description('resume a paused task')
    .argument('<id>', 'container id')
    .action((id: string) => ctx.client.tasks.resume(id));
  tasks
    .command('metrics')
    .alias('metric')
    .description("print a task's cgroup metrics")
    .argument('<id>', 'container id')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action((id: string, opts: { format?: 'table' | 'json' }) => taskMetrics(ctx, id, opts));
  tasks
    .command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete stopped tasks; carries on past failures and exits 1 if any failed')
    .argument('<ids...>', 'container ids')
    .option('-f, --force', 'kill a running task first')
    .option('--exec-id <id>', 'delete this exec process instead; exits with its status')
    .action((ids: string[], flags: { force?: boolean; execId?: string }) => removeTasks(ctx, ids, flags));
}
