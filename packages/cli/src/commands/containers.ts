import { containerSpec, createContainer, deleteContainer } from '@berth/client';
import type { AnyValue, Container } from '@berth/plugin-api';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { formatLabels, formatTable, parseLabels } from '../format.js';
import { addContainerFlags, type ContainerFlags, containerOptions } from './run.js';

/** `berth containers ls [FILTER…]`: CONTAINER IMAGE RUNTIME, as ctr. */
export async function listContainers(ctx: CommandContext, filters: readonly string[], opts: { quiet?: boolean } = {}): Promise<void> {
  const containers = (await ctx.client.containers.list(filters)).sort((a, b) => a.id.localeCompare(b.id));
  if (opts.quiet) {
    for (const c of containers) ctx.out(c.id);
    return;
  }
  ctx.io.stdout(
    formatTable(
      ['CONTAINER', 'IMAGE', 'RUNTIME'],
      containers.map((c) => [c.id, c.image || '-', c.runtime.name]),
    ),
  );
}

/** `berth containers create [flags] IMAGE ID [CMD…]`: as ctr, prints nothing. */
export async function createContainerCommand(
  ctx: CommandContext,
  image: string,
  id: string,
  args: readonly string[],
  flags: ContainerFlags,
): Promise<void> {
  await createContainer(ctx.client, containerOptions(image, id, args, flags));
}

/** A protobuf Any as Go's encoding/json writes it (ctr prints runtime options and extensions so). */
const anyJson = (a: AnyValue) => ({ type_url: a.typeUrl, ...(a.value.length > 0 ? { value: Buffer.from(a.value).toString('base64') } : {}) });

/** Go's RFC3339Nano as ctr prints times (milliseconds are all JavaScript keeps). */
const goTime = (d: Date) => d.toISOString().replace(/\.?0*Z$/, 'Z');

/** The container as `ctr containers info` prints it: Go's field names, the spec decoded. */
export function containerInfoJson(c: Container): Record<string, unknown> {
  let spec: unknown = null;
  try {
    spec = c.spec ? containerSpec(c) : null;
  } catch {
    spec = c.spec ? anyJson(c.spec) : null;
  }
  const extensions = Object.entries(c.extensions);
  return {
    ID: c.id,
    Labels: Object.keys(c.labels).length > 0 ? c.labels : null,
    Image: c.image,
    Runtime: { Name: c.runtime.name, Options: c.runtime.options ? anyJson(c.runtime.options) : null },
    SnapshotKey: c.snapshotKey,
    Snapshotter: c.snapshotter,
    CreatedAt: goTime(c.createdAt),
    UpdatedAt: goTime(c.updatedAt),
    Extensions: extensions.length > 0 ? Object.fromEntries(extensions.map(([k, v]) => [k, anyJson(v)])) : null,
    SandboxID: c.sandbox,
    Spec: spec,
  };
}

/** `berth containers info [--spec] ID`. */
export async function containerInfo(ctx: CommandContext, id: string, opts: { spec?: boolean } = {}): Promise<void> {
  const c = await ctx.client.containers.get(id);
  ctx.out(JSON.stringify(opts.spec ? containerSpec(c) : containerInfoJson(c), null, 4));
}

/**
 * `berth containers rm ID…`: a stopped task goes first, then the container
 * and (unless --keep-snapshot) its snapshot. Carries on past failures.
 */
export async function removeContainers(ctx: CommandContext, ids: readonly string[], opts: { keepSnapshot?: boolean } = {}): Promise<void> {
  for (const id of ids) {
    try {
      await deleteContainer(ctx.client, id, { keepSnapshot: !!opts.keepSnapshot });
    } catch (err) {
      ctx.report(err);
    }
  }
}

/** `berth containers label ID K=V…` (`K=` removes): prints the labels it has afterwards. */
export async function labelContainer(ctx: CommandContext, id: string, labelArgs: readonly string[]): Promise<void> {
  const labels = await ctx.client.containers.label(id, parseLabels(labelArgs));
  ctx.out(formatLabels(labels));
}

export function registerContainers(program: Command, ctx: CommandContext): void {
  const containers = program.command('containers').aliases(['c', 'container']).description('manage containers').enablePositionalOptions();
  containers
    .command('list')
    .alias('ls')
    .description('list containers matching any of the filters (e.g. image==…, labels.k==v)')
    .argument('[filters...]', 'containerd filters')
    .option('-q, --quiet', 'print only the ids')
    .action((filters: string[], opts: { quiet?: boolean }) => listContainers(ctx, filters, opts));
  addContainerFlags(
    containers
      .command('create')
      .description('create a container from an unpacked image (flags go before IMAGE)')
      .argument('<image>', 'image name')
      .argument('<id>', 'container id')
      .argument('[command...]', 'command and arguments (default: the image entrypoint and cmd)'),
  )
    .passThroughOptions()
    .action((image: string, id: string, args: string[], flags: ContainerFlags) => createContainerCommand(ctx, image, id, args, flags));
  containers
    .command('info')
    .description("print a container's record, its spec decoded")
    .argument('<id>', 'container id')
    .option('--spec', 'print only the OCI spec')
    .action((id: string, opts: { spec?: boolean }) => containerInfo(ctx, id, opts));
  containers
    .command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete containers (and their snapshots); carries on past failures and exits 1 if any failed')
    .argument('<ids...>', 'container ids')
    .option('--keep-snapshot', 'keep the snapshot')
    .action((ids: string[], opts: { keepSnapshot?: boolean }) => removeContainers(ctx, ids, opts));
  containers
    .command('label')
    .description('set labels on a container (K= removes one); prints all its labels')
    .argument('<id>', 'container id')
    .argument('[labels...]', 'labels as K=V')
    .action((id: string, labels: string[]) => labelContainer(ctx, id, labels));
}
