import { parseOciPlatform, resolveImage, rfc3339, type SnapshotsClient } from '@berth/client';
import type { Mount, SnapshotInfo } from '@berth/plugin-api';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { formatTable, parseLabels } from '../format.js';
import { labelsColumn, progressBytes } from './content.js';

/** The label `ctr snapshots prepare/commit` set, making the snapshot a garbage collection root. */
export const GC_ROOT_LABEL = 'containerd.io/gc.root';

export interface SnapshotterOption {
  readonly snapshotter?: string;
}

/** The snapshotter: the option, else $BERTH_SNAPSHOTTER / $CONTAINERD_SNAPSHOTTER, else overlayfs. */
export function snapshotsFor(ctx: CommandContext, opts: SnapshotterOption = {}): SnapshotsClient {
  return ctx.client.snapshotService(opts.snapshotter || ctx.io.env.BERTH_SNAPSHOTTER || ctx.io.env.CONTAINERD_SNAPSHOTTER || undefined);
}

const KIND_NAME = { view: 'View', active: 'Active', committed: 'Committed' } as const;

/** `mount -t TYPE SOURCE TARGET -o OPTIONS`, as `ctr snapshots mounts` prints each mount. */
export function mountCommand(m: Mount, target: string): string {
  return `mount -t ${m.type} ${m.source} ${target} -o ${m.options.join(',')}`;
}

/** `berth snapshots ls`: KEY PARENT KIND, as ctr. */
export async function listSnapshots(ctx: CommandContext, filters: readonly string[], opts: SnapshotterOption & { quiet?: boolean; json?: boolean } = {}): Promise<void> {
  const infos = (await snapshotsFor(ctx, opts).list(filters)).sort((a, b) => a.name.localeCompare(b.name));
  if (opts.json) ctx.out(JSON.stringify(infos, null, 2));
  else if (opts.quiet) for (const i of infos) ctx.out(i.name);
  else ctx.io.stdout(formatTable(['KEY', 'PARENT', 'KIND'], infos.map((i) => [i.name, i.parent ?? '', KIND_NAME[i.kind]])));
}

async function printMounts(ctx: CommandContext, mounts: readonly Mount[], target: string): Promise<void> {
  for (const m of mounts) ctx.out(mountCommand(m, target));
}

export interface PrepareCommandOptions extends SnapshotterOption {
  /** Print the mount commands for this target. */
  readonly target?: string;
  readonly mounts?: boolean;
}

/** `berth snapshots prepare|view KEY [PARENT]`: labelled a GC root, as ctr; with --target, prints its mount commands. */
export async function prepareSnapshot(
  ctx: CommandContext,
  kind: 'prepare' | 'view',
  key: string,
  parent: string | undefined,
  opts: PrepareCommandOptions = {},
): Promise<void> {
  const snapshots = snapshotsFor(ctx, opts);
  const labels = { [GC_ROOT_LABEL]: rfc3339(new Date()) };
  const mounts = kind === 'prepare' ? await snapshots.prepare(key, parent ?? '', labels) : await snapshots.view(key, parent ?? '', labels);
  if (opts.target) await printMounts(ctx, mounts, opts.target);
  else if (opts.mounts) await printMounts(ctx, mounts, '/tmp/mnt');
}

/** `berth snapshots info KEY`: the snapshot as JSON, in ctr's (Go's) field names. */
export async function snapshotInfo(ctx: CommandContext, key: string, opts: SnapshotterOption = {}): Promise<void> {
  const i: SnapshotInfo = await snapshotsFor(ctx, opts).stat(key);
  ctx.out(
    JSON.stringify(
      {
        Kind: KIND_NAME[i.kind],
        Name: i.name,
        ...(i.parent ? { Parent: i.parent } : {}),
        ...(Object.keys(i.labels).length ? { Labels: i.labels } : {}),
        Created: i.createdAt.toISOString(),
        Updated: i.updatedAt.toISOString(),
      },
      null,
      4,
    ),
  );
}

/** `berth snapshots usage [KEY…]`: KEY SIZE INODES for the keys, or every snapshot. */
export async function snapshotUsage(ctx: CommandContext, keys: readonly string[], opts: SnapshotterOption & { bytes?: boolean } = {}): Promise<void> {
  const snapshots = snapshotsFor(ctx, opts);
  const names = keys.length ? keys : (await snapshots.list()).map((i) => i.name).sort();
  const rows: string[][] = [];
  for (const name of names) {
    const u = await snapshots.usage(name);
    rows.push([name, opts.bytes ? String(u.size) : progressBytes(u.size), String(u.inodes)]);
  }
  ctx.io.stdout(formatTable(['KEY', 'SIZE', 'INODES'], rows));
}

/** `berth snapshots tree`: committed chains as ctr draws them, children indented under their parent. */
export async function snapshotTree(ctx: CommandContext, opts: SnapshotterOption = {}): Promise<void> {
  const infos = await snapshotsFor(ctx, opts).list();
  const names = new Set(infos.map((i) => i.name));
  const children = new Map<string, string[]>();
  const roots: string[] = [];
  for (const i of infos.sort((a, b) => a.name.localeCompare(b.name))) {
    if (i.parent && names.has(i.parent)) children.set(i.parent, [...(children.get(i.parent) ?? []), i.name]);
    else roots.push(i.name);
  }
  const print = (name: string, level: number): void => {
    const prefix = '  '.repeat(level) + (level > 0 ? '\\_' : '');
    ctx.out(`${prefix} ${name}`);
    for (const c of children.get(name) ?? []) print(c, level + 1);
  };
  for (const r of roots) print(r, 0);
}

/** `berth snapshots label KEY [k=v…]`: set (`k=` removes) and print the labels now on it. */
export async function labelSnapshot(ctx: CommandContext, key: string, labelArgs: readonly string[], opts: SnapshotterOption = {}): Promise<void> {
  const snapshots = snapshotsFor(ctx, opts);
  const labels = parseLabels(labelArgs);
  const info = Object.keys(labels).length === 0 ? await snapshots.stat(key) : await snapshots.label(key, labels);
  const set = labelsColumn(info.labels);
  ctx.out(set === '-' ? '' : set);
}

/** `berth snapshots rm KEY…`: each failure reported, the rest still removed. */
export async function removeSnapshots(ctx: CommandContext, keys: readonly string[], opts: SnapshotterOption = {}): Promise<void> {
  const snapshots = snapshotsFor(ctx, opts);
  for (const key of keys) {
    try {
      await snapshots.remove(key);
    } catch (err) {
      ctx.report(err);
    }
  }
}

function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, [...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', (err) => fail(new Error(`${cmd}: ${err.message}`)));
    child.on('close', (code) => (code === 0 ? done() : fail(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || `exit ${code}`}`))));
  });
}

/** Mount each mount on `target` with mount(8), in order. A bind mount goes as `-o bind…` (mount(8) has no bind type). */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  for (const m of mounts) {
    const bind = m.type === 'bind' || m.type === 'rbind';
    const options = bind && !m.options.some((o) => o === 'bind' || o === 'rbind') ? ['rbind', ...m.options] : m.options;
    await run('mount', [...(bind ? [] : ['-t', m.type]), ...(options.length ? ['-o', options.join(',')] : []), m.source, target]);
  }
}

/**
 * `berth images mount NAME TARGET`: a view (with --rw, an active snapshot)
 * keyed TARGET on the image's unpacked layers, mounted there. Labelled a GC
 * root so it outlives this command; `images unmount` removes it.
 */
export async function mountImage(ctx: CommandContext, name: string, target: string, opts: SnapshotterOption & { rw?: boolean; platform?: string } = {}): Promise<void> {
  const abs = resolve(target);
  const snapshots = snapshotsFor(ctx, opts);
  const image = await ctx.client.images.get(name);
  const resolved = await resolveImage(ctx.client.content, image, opts.platform ? { platform: parseOciPlatform(opts.platform) } : {});
  if (resolved.chainId && !(await snapshots.find(resolved.chainId))) {
    throw new UsageError(`image ${name} is not unpacked for snapshotter ${snapshots.snapshotter}: run berth images unpack ${name}`);
  }
  const labels = { [GC_ROOT_LABEL]: rfc3339(new Date()) };
  const mounts = opts.rw ? await snapshots.prepare(abs, resolved.chainId, labels) : await snapshots.view(abs, resolved.chainId, labels);
  try {
    await mountAll(mounts, abs);
  } catch (err) {
    await snapshots.remove(abs).catch(() => {});
    throw err;
  }
  ctx.out(abs);
}

/** `berth images unmount TARGET`: umount it and remove the snapshot `images mount` made for it. */
export async function unmountImage(ctx: CommandContext, target: string, opts: SnapshotterOption = {}): Promise<void> {
  const abs = resolve(target);
  await run('umount', [abs]);
  await snapshotsFor(ctx, opts).remove(abs);
  ctx.out(abs);
}

function withSnapshotter(cmd: Command): Command {
  return cmd.option('--snapshotter <name>', 'snapshotter (env: BERTH_SNAPSHOTTER, default: overlayfs)');
}

export function registerSnapshots(program: Command, ctx: CommandContext): void {
  const snapshots = program.command('snapshots').alias('snapshot').description('manage snapshots');
  withSnapshotter(
    snapshots
      .command('list')
      .alias('ls')
      .description('list snapshots matching any of the filters (e.g. kind==committed)')
      .argument('[filters...]', 'containerd filters')
      .option('-q, --quiet', 'print only the keys')
      .option('--json', 'print a JSON array'),
  ).action((filters: string[], opts) => listSnapshots(ctx, filters, opts));
  for (const kind of ['prepare', 'view'] as const) {
    withSnapshotter(
      snapshots
        .command(kind)
        .description(kind === 'prepare' ? 'prepare a writable snapshot on a committed parent' : 'make a read-only view of a committed snapshot')
        .argument('<key>', 'new snapshot key')
        .argument('[parent]', 'committed parent snapshot')
        .option('--target <path>', 'print the mount commands for this target'),
    ).action((key: string, parent: string | undefined, opts: PrepareCommandOptions) => prepareSnapshot(ctx, kind, key, parent, opts));
  }
  withSnapshotter(
    snapshots.command('mounts').alias('m').description('print the mount commands of an active snapshot or view').argument('<target>', 'mount point').argument('<key>', 'snapshot key'),
  ).action(async (target: string, key: string, opts: SnapshotterOption) => printMounts(ctx, await snapshotsFor(ctx, opts).mounts(key), target));
  withSnapshotter(
    snapshots.command('commit').description('commit an active snapshot under a name').argument('<name>', 'committed name').argument('<key>', 'active snapshot key'),
  ).action((name: string, key: string, opts: SnapshotterOption) => snapshotsFor(ctx, opts).commit(name, key, { [GC_ROOT_LABEL]: rfc3339(new Date()) }));
  withSnapshotter(
    snapshots.command('delete').aliases(['del', 'remove', 'rm']).description('remove snapshots').argument('<keys...>', 'snapshot keys'),
  ).action((keys: string[], opts: SnapshotterOption) => removeSnapshots(ctx, keys, opts));
  withSnapshotter(snapshots.command('tree').description('draw the snapshots as a tree of parents and children')).action((opts: SnapshotterOption) =>
    snapshotTree(ctx, opts),
  );
  withSnapshotter(snapshots.command('info').description('print a snapshot as JSON').argument('<key>', 'snapshot key')).action(
    (key: string, opts: SnapshotterOption) => snapshotInfo(ctx, key, opts),
  );
  withSnapshotter(
    snapshots.command('usage').description('bytes and inodes used by snapshots (each alone, not its parents)').argument('[keys...]', 'snapshot keys (default: all)').option('-b', 'print sizes in bytes'),
  ).action((keys: string[], opts: SnapshotterOption & { b?: boolean }) => snapshotUsage(ctx, keys, { ...opts, bytes: !!opts.b }));
  withSnapshotter(
    snapshots.command('label').description('set labels (KEY= removes one) and print those on the snapshot').argument('<key>', 'snapshot key').argument('[labels...]', 'KEY=VALUE'),
  ).action((key: string, labels: string[], opts: SnapshotterOption) => labelSnapshot(ctx, key, labels, opts));
  withSnapshotter(snapshots.command('cleanup').description('remove what no snapshot owns any more')).action((opts: SnapshotterOption) =>
    snapshotsFor(ctx, opts).cleanup(),
  );
}
