import { formatOciPlatform } from '@berth/client';
import { type Image, isAlreadyExists, isNotFound } from '@berth/plugin-api';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import type { CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { formatTable } from '../format.js';
import { labelsColumn, type ListOptions, progressBytes, stdinOf, stdoutStreamOf } from './content.js';
import { mountImage, type SnapshotterOption, snapshotsFor, unmountImage } from './snapshots.js';

export interface UnpackCommandOptions extends SnapshotterOption {
  readonly platform?: string;
}

/**
 * Unpack each image, writing `unpacking NAME (DIGEST)...done` as ctr does.
 * `afterTransfer` is import's and pull's unpack-by-default: their stdout
 * stays one `NAME DIGEST` line per image, so progress goes to stderr. An
 * image that cannot be unpacked (say, a layer whose diff ID does not match
 * its config) fails the command, as in ctr, with the cause; after an import
 * or pull the image stays stored, and the message says so.
 */
export async function unpackImages(
  ctx: CommandContext,
  images: readonly Pick<Image, 'name' | 'target'>[],
  opts: UnpackCommandOptions = {},
  afterTransfer = false,
): Promise<void> {
  const snapshotter = snapshotsFor(ctx, opts).snapshotter;
  const write = afterTransfer ? ctx.io.stderr : ctx.io.stdout;
  for (const image of images) {
    write(`unpacking ${image.name} (${image.target.digest})...`);
    try {
      await ctx.client.unpack(image.name, { snapshotter, ...(opts.platform ? { platform: opts.platform } : {}) });
    } catch (err) {
      write('failed\n');
      if (afterTransfer) ctx.io.stderr(`berth: ${image.name} is stored, but unpacking it failed:\n`);
      throw err;
    }
    write('done\n');
  }
}

/** `berth images ls`: REF TYPE DIGEST SIZE PLATFORMS LABELS, as ctr. */
export async function listImages(ctx: CommandContext, filters: readonly string[], opts: ListOptions = {}): Promise<void> {
  const images = (await ctx.client.images.list(filters)).sort((a, b) => a.name.localeCompare(b.name));
  if (opts.json) {
    ctx.out(JSON.stringify(images, null, 2));
    return;
  }
  if (opts.quiet) {
    for (const i of images) ctx.out(i.name);
    return;
  }
  const rows: string[][] = [];
  for (const image of images) {
    // As ctr: an image whose content is incomplete still lists, without a size or platforms.
    const size = await ctx.client.images.size(image.target).then(progressBytes, () => '-');
    const platforms = await ctx.client.images.platforms(image.target).then(
      (ps) => [...new Set(ps.map(formatOciPlatform))].sort().join(',') || '-',
      () => '-',
    );
    rows.push([image.name, image.target.mediaType, image.target.digest, size, platforms, labelsColumn(image.labels)]);
  }
  ctx.io.stdout(formatTable(['REF', 'TYPE', 'DIGEST', 'SIZE', 'PLATFORMS', 'LABELS'], rows));
}

/** `berth images rm NAME…`: prints each name removed; an absent one is a warning (as ctr). */
export async function removeImages(ctx: CommandContext, names: readonly string[], opts: { sync?: boolean } = {}): Promise<void> {
  for (const [i, name] of names.entries()) {
    try {
      // As ctr: wait for garbage collection once, after the last.
      await ctx.client.images.delete(name, { sync: !!opts.sync && i === names.length - 1 });
      ctx.out(name);
    } catch (err) {
      if (isNotFound(err)) ctx.io.stderr(`berth: ${name}: image not found\n`);
      else ctx.report(err);
    }
  }
}

/** `berth images tag SOURCE TARGET…`: name the same target again; prints each new name. */
export async function tagImage(ctx: CommandContext, source: string, targets: readonly string[], opts: { force?: boolean } = {}): Promise<void> {
  await ctx.client.withLease(async (client) => {
    const image: Image = await client.images.get(source);
    for (const name of targets) {
      const copy = { name, target: image.target, labels: image.labels };
      try {
        await client.images.create(copy);
      } catch (err) {
        if (!isAlreadyExists(err) || !opts.force) throw err;
        await client.images.delete(name);
        await client.images.create(copy);
      }
      ctx.out(name);
    }
  });
}

export interface ImportCommandOptions {
  readonly baseName?: string;
  readonly indexName?: string;
  readonly allPlatforms?: boolean;
  readonly platform?: string;
  /** False with --no-unpack. */
  readonly unpack?: boolean;
  readonly snapshotter?: string;
}

/**
 * `berth images import FILE|-`: an OCI layout or `docker save` tarball. Prints
 * each image made, `NAME DIGEST`. As ctr, tag-only OCI names get the prefix
 * `--base-name` or `import-<date>`; with `--base-name`, only names under it.
 */
export async function importImages(ctx: CommandContext, file: string, opts: ImportCommandOptions = {}): Promise<void> {
  const prefix = opts.baseName || `import-${new Date().toISOString().slice(0, 10)}`;
  const images = await ctx.client.images.importArchive(file === '-' ? stdinOf(ctx) : file, {
    namePrefix: prefix,
    onlyPrefixed: !!opts.baseName,
    ...(opts.indexName ? { indexName: opts.indexName } : {}),
    ...(opts.allPlatforms ? { allPlatforms: true } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
  });
  for (const image of images) ctx.out(`${image.name} ${image.target.digest}`);
  if (opts.unpack === false) return;
  // An --index-name image is the archive's whole index: unpacked through the platform it resolves to, like the others.
  await unpackImages(
    ctx,
    images,
    { ...(opts.snapshotter ? { snapshotter: opts.snapshotter } : {}), ...(opts.platform ? { platform: opts.platform } : {}) },
    true,
  );
}

export interface ExportCommandOptions {
  readonly format?: 'oci' | 'docker';
  readonly platform?: string;
  readonly allPlatforms?: boolean;
  readonly skipManifestJson?: boolean;
}

/** `berth images export FILE|- NAME…`: see ImagesClient.exportArchive; a failed export leaves no file. */
export async function exportImages(ctx: CommandContext, file: string, names: readonly string[], opts: ExportCommandOptions = {}): Promise<void> {
  const exportOpts = {
    ...(opts.format ? { format: opts.format } : {}),
    ...(opts.platform ? { platform: opts.platform } : {}),
    ...(opts.allPlatforms ? { allPlatforms: true } : {}),
    ...(opts.skipManifestJson ? { skipManifestJson: true } : {}),
  };
  if (file === '-') {
    await ctx.client.images.exportArchive(names, stdoutStreamOf(ctx), exportOpts);
    return;
  }
  const out = createWriteStream(file);
  try {
    await ctx.client.images.exportArchive(names, out, exportOpts);
    out.end();
    await finished(out);
  } catch (err) {
    out.destroy();
    await rm(file, { force: true });
    throw err;
  }
}

function platformOption(value: string): string {
  if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+){0,2}$/.test(value)) throw new InvalidArgumentError(`invalid platform ${JSON.stringify(value)}: want os/arch[/variant]`);
  return value;
}

/** The `images` command, made here or found (another module adds pull and push to it). */
function imagesCommand(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'images') ??
    program.command('images').alias('image').alias('i').description('manage images')
  );
}

export function registerImages(program: Command, ctx: CommandContext): void {
  const images = imagesCommand(program);
  images
    .command('list')
    .alias('ls')
    .description('list images matching any of the filters (e.g. name~=^docker.io/)')
    .argument('[filters...]', 'containerd filters')
    .option('-q, --quiet', 'print only the names')
    .option('--json', 'print a JSON array')
    .action((filters: string[], opts: ListOptions) => listImages(ctx, filters, opts));
  images
    .command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('remove images by name; prints each one removed')
    .argument('<names...>', 'image names')
    .option('--sync', 'wait until garbage collection has removed what only these images held')
    .action((names: string[], opts: { sync?: boolean }) => removeImages(ctx, names, opts));
  images
    .command('tag')
    .description('give an image more names')
    .argument('<source>', 'existing image name')
    .argument('<targets...>', 'new names')
    .option('--force', 'replace a target name that already exists')
    .action((source: string, targets: string[], opts: { force?: boolean }) => tagImage(ctx, source, targets, opts));
  images
    .command('import')
    .description('import an OCI layout or `docker save` tarball (gzipped too); prints NAME DIGEST per image')
    .argument('<file>', 'archive path, or - for stdin')
    .option('--base-name <name>', 'name for tag-only refs, and import only names under it (default: import-<date> for tag-only refs)')
    .option('--index-name <name>', 'also keep the archive index as an image of this name')
    .option('--all-platforms', 'import content for every platform')
    .option('--platform <os/arch[/variant]>', 'import content for this platform only (default: this host’s)', platformOption)
    .option('--no-unpack', 'do not unpack the images into snapshots')
    .option('--snapshotter <name>', 'snapshotter to unpack into (env: BERTH_SNAPSHOTTER, default: overlayfs)')
    .action((file: string, opts: ImportCommandOptions) => importImages(ctx, file, opts));
  images
    .command('unpack')
    .description('unpack images into snapshots, ready to run')
    .argument('<names...>', 'image names')
    .option('--snapshotter <name>', 'snapshotter (env: BERTH_SNAPSHOTTER, default: overlayfs)')
    .option('--platform <os/arch[/variant]>', 'platform to unpack from a multi-platform image (default: this host’s)', platformOption)
    .action(async (names: string[], opts: UnpackCommandOptions) => {
      const list: Image[] = [];
      for (const name of names) list.push(await ctx.client.images.get(name));
      await unpackImages(ctx, list, opts);
    });
  images
    .command('mount')
    .description('mount an unpacked image read-only (with --rw, writable) on a directory; prints it')
    .argument('<name>', 'image name')
    .argument('<target>', 'mount point (an existing directory)')
    .option('--rw', 'mount a writable snapshot')
    .option('--snapshotter <name>', 'snapshotter (env: BERTH_SNAPSHOTTER, default: overlayfs)')
    .option('--platform <os/arch[/variant]>', 'platform to mount from a multi-platform image (default: this host’s)', platformOption)
    .action((name: string, target: string, opts: SnapshotterOption & { rw?: boolean; platform?: string }) => mountImage(ctx, name, target, opts));
  images
    .command('unmount')
    .alias('umount')
    .description('unmount what `images mount` mounted and remove its snapshot')
    .argument('<target>', 'mount point')
    .option('--snapshotter <name>', 'snapshotter (env: BERTH_SNAPSHOTTER, default: overlayfs)')
    .action((target: string, opts: SnapshotterOption) => unmountImage(ctx, target, opts));
  images
    .command('export')
    .description('write images to an archive: an OCI layout with Docker manifest.json (default), or `docker save` layout')
    .argument('<file>', 'archive path, or - for stdout')
    .argument('<names...>', 'image names')
    .addOption(new Option('--format <format>', 'archive layout').choices(['oci', 'docker']).default('oci'))
    .option('--platform <os/arch[/variant]>', 'platform to export from multi-platform images (default: this host’s)', platformOption)
    .option('--all-platforms', 'export every platform (all their content must be here)')
    .option('--skip-manifest-json', 'oci format: leave out Docker’s manifest.json')
    .action((file: string, names: string[], opts: ExportCommandOptions) => {
      if (names.length === 0) throw new UsageError('name at least one image to export');
      return exportImages(ctx, file, names, opts);
    });
}
