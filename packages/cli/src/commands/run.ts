import { type NewContainerOptions, type ProcessStreams, parseMountFlag } from '@berth/client';
import { type Command, InvalidArgumentError } from 'commander';
import type { Readable, Writable } from 'node:stream';
import type { CliIO, CommandContext } from '../command-context.js';
import { type ExitCode, UsageError } from '../exit-code.js';
import { parseLabels } from '../format.js';

/**
 * The streams a container's stdio is copied to and from. main.ts's CliIO has
 * only text; these default to the process's own streams, tests give their
 * own (`stdin` and `stdoutStream` as the content commands take them).
 */
export interface ProcessIOStreams {
  readonly stdin?: Readable;
  readonly stdoutStream?: Writable;
  readonly stderrStream?: Writable;
}

export function processStreams(ctx: CommandContext): ProcessStreams {
  const io = ctx.io as CliIO & ProcessIOStreams;
  return {
    stdin: io.stdin ?? process.stdin,
    stdout: io.stdoutStream ?? process.stdout,
    stderr: io.stderrStream ?? process.stderr,
  };
}

/** Signals go to the container only when this CLI owns the process (not when embedded with its own streams). */
export function ownsProcess(ctx: CommandContext): boolean {
  return (ctx.io as CliIO & ProcessIOStreams).stdin === undefined;
}

/** Exit with the container's status, as ctr does (an error seen before still counts). */
export function exitWith(ctx: CommandContext, status: number): void {
  if (status > ctx.exitCode) ctx.exitCode = status as ExitCode;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function mountOption(value: string, previous: string[] = []): string[] {
  try {
    parseMountFlag(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return [...previous, value];
}

function bytesOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`want a number of bytes, not ${JSON.stringify(value)}`);
  return Number(value);
}

function cpusOption(value: string): number {
  const n = Number(value);
  if (!/^\d*\.?\d+$/.test(value) || !(n > 0)) throw new InvalidArgumentError(`want a positive number of CPUs, not ${JSON.stringify(value)}`);
  return n;
}

function sharesOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`want a whole number, not ${JSON.stringify(value)}`);
  return Number(value);
}

/** The flags `run` and `containers create` share, as ctr's ContainerFlags. */
export interface ContainerFlags {
  readonly env?: string[];
  readonly mount?: string[];
  readonly label?: string[];
  readonly annotation?: string[];
  readonly memoryLimit?: number;
  readonly netHost?: boolean;
  readonly runtime?: string;
  readonly snapshotter?: string;
  readonly tty?: boolean;
  readonly cwd?: string;
  readonly user?: string;
  readonly readOnly?: boolean;
  readonly capAdd?: string[];
  readonly capDrop?: string[];
  readonly allowNewPrivs?: boolean;
  readonly platform?: string;
  readonly cpus?: number;
  readonly cpuShares?: number;
}

export function addContainerFlags(cmd: Command): Command {
  return cmd
    .option('--env <K=V>', 'set an environment variable (repeatable); K alone removes it', collect)
    .option('--mount <spec>', 'add a mount, e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro (repeatable)', mountOption)
    .option('--label <K=V>', 'set a container label, also an OCI annotation (repeatable)', collect)
    .option('--annotation <K=V>', 'set an OCI annotation (repeatable)', collect)
    .option('--memory-limit <bytes>', 'memory limit in bytes', bytesOption)
    .option('--net-host', "use the host's network (and its /etc/hosts, /etc/resolv.conf)")
    .option('--runtime <name>', 'runtime name or shim path', 'io.containerd.runc.v2')
    .option('--snapshotter <name>', "snapshotter (default: the namespace's, else overlayfs)")
    .option('-t, --tty', 'allocate a terminal')
    .option('--cwd <dir>', 'working directory of the process')
    .option('-u, --user <user>', 'user[:group] (names resolved in the image)')
    .option('--read-only', 'make the root filesystem read-only')
    .option('--cap-add <CAP_X>', 'add a capability (repeatable)', collect)
    .option('--cap-drop <CAP_X>', 'drop a capability (repeatable)', collect)
    .option('--allow-new-privs', 'turn off no_new_privileges')
    .option('--platform <os/arch[/variant]>', "run the image's manifest for this platform");
}

/** Client options from the shared flags. */
export function containerOptions(image: string, id: string, args: readonly string[], flags: ContainerFlags): NewContainerOptions {
  const labels = parseLabels(flags.label ?? []);
  return {
    image,
    id,
    ...(args.length > 0 ? { args } : {}),
    ...(flags.env ? { env: flags.env } : {}),
    ...(flags.mount ? { mounts: flags.mount } : {}),
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(flags.annotation ? { annotations: parseLabels(flags.annotation) } : {}),
    ...(flags.memoryLimit ? { memoryLimit: flags.memoryLimit } : {}),
    ...(flags.netHost ? { netHost: true } : {}),
    ...(flags.runtime ? { runtime: flags.runtime } : {}),
    ...(flags.snapshotter ? { snapshotter: flags.snapshotter } : {}),
    ...(flags.tty ? { tty: true } : {}),
    ...(flags.cwd ? { cwd: flags.cwd } : {}),
    ...(flags.user ? { user: flags.user } : {}),
    ...(flags.readOnly ? { readonlyRootfs: true } : {}),
    ...(flags.capAdd ? { capAdd: flags.capAdd } : {}),
    ...(flags.capDrop ? { capDrop: flags.capDrop } : {}),
    ...(flags.allowNewPrivs ? { allowNewPrivileges: true } : {}),
    ...(flags.platform ? { platform: flags.platform } : {}),
    ...(flags.cpus ? { cpus: flags.cpus } : {}),
    ...(flags.cpuShares ? { cpuShares: flags.cpuShares } : {}),
  };
}

export interface RunFlags extends ContainerFlags {
  readonly rm?: boolean;
  readonly detach?: boolean;
  readonly interactive?: boolean;
  readonly nullIo?: boolean;
  readonly fifoDir?: string;
}

/**
 * `berth run [flags] IMAGE ID [CMD…]`, as `ctr run`: exits with the
 * container's status; with `-d`, returns once it started.
 */
export async function runContainerCommand(ctx: CommandContext, image: string, id: string, args: readonly string[], flags: RunFlags): Promise<void> {
  if (flags.rm && flags.detach) throw new UsageError('flags --detach and --rm cannot be specified together');
  const streams = processStreams(ctx);
  const result = await ctx.client.run({
    ...containerOptions(image, id, args, flags),
    ...(flags.rm ? { rm: true } : {}),
    ...(flags.detach ? { detach: true } : {}),
    ...(flags.nullIo ? { nullIO: true } : {}),
    ...(flags.fifoDir ? { fifoRoot: flags.fifoDir } : {}),
    stdin: !!flags.interactive,
    // Without -i, stdin stays ours: the container reads nothing (ctr always hands it over).
    streams: flags.interactive || flags.tty ? streams : { stdout: streams.stdout, stderr: streams.stderr },
    forwardSignals: ownsProcess(ctx),
  });
  if (result.exitStatus !== undefined) exitWith(ctx, result.exitStatus);
}

export function registerRun(program: Command, ctx: CommandContext): void {
  const run = program
    .command('run')
    .description('run a container from an unpacked image; exits with its status (flags go before IMAGE)')
    .argument('<image>', 'image name')
    .argument('<id>', 'container id')
    .argument('[command...]', 'command and arguments (default: the image entrypoint and cmd)')
    .option('--rm', 'remove the task, container and snapshot when it exits')
    .option('-d, --detach', 'return once started (not with --rm)')
    .option('-i, --interactive', 'copy stdin to the container')
    .option('--null-io', 'send all of its output to /dev/null')
    .option('--fifo-dir <dir>', 'folder for the stdio FIFOs')
    .option('--cpus <n>', 'CPU quota (CFS), e.g. 0.5', cpusOption)
    .option('--cpu-shares <n>', 'CPU shares', sharesOption, 1024);
  addContainerFlags(run)
    // Everything after IMAGE belongs to the container's command, as with ctr.
    .passThroughOptions()
    .action((image: string, id: string, args: string[], flags: RunFlags) => runContainerCommand(ctx, image, id, args, flags));
}
