import {
  formatBytes,
  formatRate,
  lineProgress,
  type ProgressRenderer,
  parsePlatform,
  parseReference,
  parseUserOption,
  pull,
  push,
  type RegistryCredentials,
  tableProgress,
} from '@berth/client';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { unpackImages } from './images.js';

export interface RemoteOptions {
  readonly plainHttp?: boolean;
  readonly skipVerify?: boolean;
  /** `user:password`, or `user` with the password in $BERTH_REGISTRY_PASSWORD. */
  readonly user?: string;
  readonly platform?: string;
  /** `auto` (a table on a terminal, lines otherwise), `tty`, `plain` or `quiet`. */
  readonly progress?: 'auto' | 'tty' | 'plain' | 'quiet';
  readonly concurrency?: number;
}

export interface PullCommandOptions extends RemoteOptions {
  readonly allPlatforms?: boolean;
  /** False with --no-unpack. */
  readonly unpack?: boolean;
  readonly snapshotter?: string;
}

export interface PushCommandOptions extends RemoteOptions {
  /** Upload blobs in chunks of this many bytes. */
  readonly chunkSize?: number;
}

/** `berth images pull REF`: fetch an image into the content store, name it REF and (unless --no-unpack) unpack it. */
export async function pullImage(ctx: CommandContext, ref: string, opts: PullCommandOptions = {}): Promise<void> {
  const name = checkedReference(ref);
  const started = Date.now();
  const renderer = progressRenderer(ctx, opts, name);
  let image: Awaited<ReturnType<typeof pull>>['image'];
  try {
    const res = await pull(ctx.client, name, {
      ...common(ctx, opts),
      ...(opts.platform ? { platform: checkedPlatform(opts.platform) } : {}),
      allPlatforms: !!opts.allPlatforms,
      ...(renderer ? { onProgress: renderer.listener } : {}),
    });
    renderer?.finish();
    const secs = (Date.now() - started) / 1000;
    ctx.out(`${res.image.name} ${res.image.target.digest} (fetched ${formatBytes(res.bytesFetched)} in ${secs.toFixed(1)} s, ${formatRate(res.bytesFetched / Math.max(secs, 0.001))})`);
    image = res.image;
  } catch (err) {
    renderer?.finish();
    throw err;
  }
  if (opts.unpack !== false) {
    await unpackImages(
      ctx,
      [image],
      { ...(opts.snapshotter ? { snapshotter: opts.snapshotter } : {}), ...(opts.platform ? { platform: opts.platform } : {}) },
      true,
    );
  }
}

/** `berth images push REF [LOCAL]`: push the local image LOCAL (default: REF) to REF. */
export async function pushImage(ctx: CommandContext, ref: string, local: string | undefined, opts: PushCommandOptions = {}): Promise<void> {
  const remote = checkedReference(ref);
  const started = Date.now();
  const renderer = progressRenderer(ctx, opts, `${remote} (push)`);
  try {
    const res = await push(ctx.client, local ?? remote, remote, {
      ...common(ctx, opts),
      ...(opts.platform ? { platform: opts.platform } : {}),
      ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
      ...(renderer ? { onProgress: renderer.listener } : {}),
    });
    renderer?.finish();
    ctx.out(`${res.reference} ${res.target.digest} (${res.blobsPushed} blobs uploaded in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (err) {
    renderer?.finish();
    throw err;
  }
}

function common(ctx: CommandContext, opts: RemoteOptions) {
  const auth = credentials(ctx, opts.user);
  return {
    plainHttp: !!opts.plainHttp,
    skipVerify: !!opts.skipVerify,
    ...(auth ? { auth } : {}),
    ...(opts.concurrency ? { concurrency: opts.concurrency } : {}),
    signal: ctx.io.interrupted(),
  };
}

/** Normalized (`alpine` → `docker.io/library/alpine:latest`); a malformed one is a usage error. */
function checkedReference(ref: string): string {
  try {
    return parseReference(ref).toString();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function checkedPlatform(text: string): string {
  try {
    parsePlatform(text);
    return text;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function credentials(ctx: CommandContext, user: string | undefined): RegistryCredentials | undefined {
  if (user === undefined) return undefined;
  if (user.includes(':')) return parseUserOption(user);
  const password = ctx.io.env.BERTH_REGISTRY_PASSWORD;
  if (password === undefined) throw new UsageError(`--user ${user}: give user:password, or the password in BERTH_REGISTRY_PASSWORD`);
  return parseUserOption(user, password);
}

function progressRenderer(ctx: CommandContext, opts: RemoteOptions, title: string): ProgressRenderer | undefined {
  const mode = opts.progress ?? 'auto';
  if (mode === 'quiet') return undefined;
  // CliIO does not say whether stdout is a terminal; main.ts binds it to the process's.
  const tty = mode === 'tty' || (mode === 'auto' && process.stdout.isTTY === true && ctx.io.env.TERM !== 'dumb');
  return tty ? tableProgress(ctx.io.stdout, { title }) : lineProgress(ctx.io.stdout);
}

function positiveInt(value: string): number {
  const n = Number(value);
  // commander reports its own InvalidArgumentError as a usage error naming the option.
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`not a positive integer: ${JSON.stringify(value)}`);
  return n;
}

function remoteOptions(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry')
    .option('--skip-verify', 'accept any TLS certificate from the registry')
    .option('-u, --user <user[:password]>', 'registry credentials (password also from BERTH_REGISTRY_PASSWORD)')
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'tty', 'plain', 'quiet']).default('auto'))
    .option('--concurrency <n>', 'blobs transferred at once (default 3)', positiveInt);
}

/**
 * `pull` and `push` on the `images` noun: the one another module registers
 * when it is there, else one made here.
 */
export function registerImagesRemote(program: Command, ctx: CommandContext): void {
  const images =
    program.commands.find((c) => c.name() === 'images') ?? program.command('images').alias('image').alias('i').description('manage images');
  remoteOptions(
    images
      .command('pull')
      .description('fetch an image from a registry into the content store and unpack it')
      .argument('<ref>', 'image reference, e.g. docker.io/library/alpine:3.19 or localhost:5000/app:v1')
      .option('--platform <os/arch[/variant]>', 'platform to fetch from an index (default linux/amd64)')
      .option('--all-platforms', 'fetch the manifests of every platform in an index')
      .option('--no-unpack', 'do not unpack the image into snapshots')
      .option('--snapshotter <name>', 'snapshotter to unpack into (env: BERTH_SNAPSHOTTER, default: overlayfs)'),
  ).action((ref: string, opts: PullCommandOptions) => pullImage(ctx, ref, opts));
  remoteOptions(
    images
      .command('push')
      .description('push a local image to a registry')
      .argument('<ref>', 'remote reference to push to')
      .argument('[local]', 'local image name (default: the remote reference)')
      .option('--platform <os/arch[/variant]>', 'push only this platform’s manifest from an index')
      .option('--chunk-size <bytes>', 'upload blobs in chunks of this size (default: one request per blob)', positiveInt),
  ).action((ref: string, local: string | undefined, opts: PushCommandOptions) => pushImage(ctx, ref, local, opts));
}
