import type { Labels } from '@berth/plugin-api';
import type { Command } from 'commander';
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import type { CliIO, CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { formatTable, parseLabels } from '../format.js';

/**
 * Byte streams for the commands that move blobs and archives. main.ts's
 * CliIO has only text; these default to the process's own streams, and
 * tests give their own.
 */
export interface BinaryIO {
  readonly stdin?: Readable;
  readonly stdoutStream?: Writable;
}

export function stdinOf(ctx: CommandContext): Readable {
  return (ctx.io as CliIO & BinaryIO).stdin ?? process.stdin;
}

export function stdoutStreamOf(ctx: CommandContext): Writable {
  return (ctx.io as CliIO & BinaryIO).stdoutStream ?? process.stdout;
}

/** Write to a stream, waiting when it asks us to. */
export async function writeAll(out: Writable, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  for await (const chunk of chunks) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
}

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** A digest argument, checked before the daemon is asked (as ctr's digest.Parse). */
export function checkedDigest(text: string): string {
  if (!DIGEST.test(text)) throw new UsageError(`invalid digest ${JSON.stringify(text)}: want e.g. sha256:<64 hex digits>`);
  return text;
}

/** docker/go-units HumanSize, as `ctr content ls` prints sizes: 4 significant digits, decimal units. */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB'];
  let size = bytes;
  let i = 0;
  while (size >= 1000 && i < units.length - 1) {
    size /= 1000;
    i++;
  }
  return `${Number(size.toPrecision(4))}${units[i]}`;
}

/** containerd's progress.Bytes, as `ctr images ls` prints sizes: binary units, one decimal. */
export function progressBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let size = bytes;
  let i = 0;
  while (size >= 1024 && i < units.length - 1) {
    size /= 1024;
    i++;
  }
  return `${size.toFixed(1)} ${units[i]}`;
}

/** docker/go-units HumanDuration, as ctr prints ages. */
export function humanDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.round(ms / 60_000);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(ms / 3_600_000);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** `k=v,k2=v2` sorted, or `-`, as ctr's listings print labels. */
export function labelsColumn(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length === 0 ? '-' : keys.map((k) => `${k}=${labels[k]}`).join(',');
}

export interface ListOptions {
  readonly quiet?: boolean;
  readonly json?: boolean;
}

/** `berth content ls`: DIGEST SIZE AGE LABELS, as ctr. */
export async function listContent(ctx: CommandContext, filters: readonly string[], opts: ListOptions = {}): Promise<void> {
  const infos = (await ctx.client.content.list(filters)).sort((a, b) => a.digest.localeCompare(b.digest));
  if (opts.json) ctx.out(JSON.stringify(infos, null, 2));
  else if (opts.quiet) for (const i of infos) ctx.out(i.digest);
  else {
    const now = Date.now();
    ctx.io.stdout(
      formatTable(
        ['DIGEST', 'SIZE', 'AGE', 'LABELS'],
        infos.map((i) => [i.digest, humanSize(i.size), humanDuration(now - i.createdAt.getTime()), labelsColumn(i.labels)]),
      ),
    );
  }
}

/** `berth content get DIGEST`: the blob's bytes on stdout. */
export async function getContent(ctx: CommandContext, digest: string): Promise<void> {
  await writeAll(stdoutStreamOf(ctx), ctx.client.content.read(checkedDigest(digest)));
}

export interface IngestCommandOptions {
  readonly expectedDigest?: string;
  readonly expectedSize?: number;
  /** `KEY=VALUE` labels set at commit (berth's addition to ctr's flags). */
  readonly label?: string[];
}

/**
 * `berth content ingest REF`: a blob from stdin; prints nothing, as ctr. When
 * stdin is a regular file (`< FILE`), berthd reads it by descriptor.
 */
export async function ingestContent(ctx: CommandContext, ref: string, opts: IngestCommandOptions = {}): Promise<void> {
  if (opts.expectedDigest) checkedDigest(opts.expectedDigest);
  const ingestOpts = {
    ...(opts.expectedDigest ? { expected: opts.expectedDigest } : {}),
    ...(opts.expectedSize ? { total: opts.expectedSize } : {}),
    ...(opts.label?.length ? { labels: parseLabels(opts.label) } : {}),
  };
  if (!(ctx.io as CliIO & BinaryIO).stdin && stdinIsFile()) await ctx.client.content.ingestFile(ref, 0, ingestOpts);
  else await ctx.client.content.ingest(ref, stdinOf(ctx), ingestOpts);
}

function stdinIsFile(): boolean {
  try {
    return fstatSync(0).isFile();
  } catch {
    return false;
  }
}

/** `berth content rm DIGEST…`: prints what it removed; an absent blob is a warning, as ctr skips it. */
export async function removeContent(ctx: CommandContext, digests: readonly string[]): Promise<void> {
  for (const digest of digests) {
    try {
      await ctx.client.content.delete(checkedDigest(digest));
      ctx.out(digest);
    } catch (err) {
      if ((err as { kind?: string }).kind === 'not-found') ctx.io.stderr(`berth: ${digest}: not found\n`);
      else ctx.report(err);
    }
  }
}

/** `berth content label DIGEST k=v…`: set (`k=` removes) and print the labels now on the blob. */
export async function labelContent(ctx: CommandContext, digest: string, labelArgs: readonly string[]): Promise<void> {
  const labels = parseLabels(labelArgs);
  const keys = Object.keys(labels);
  const info =
    keys.length === 0
      ? await ctx.client.content.info(checkedDigest(digest))
      : await ctx.client.content.update(
          checkedDigest(digest),
          labels,
          keys.map((k) => `labels.${k}`),
        );
  const set = labelsColumn(info.labels);
  ctx.out(set === '-' ? '' : set);
}

/** `berth content active`: ingests in progress, REF SIZE AGE. */
export async function activeContent(ctx: CommandContext, filters: readonly string[], opts: { json?: boolean } = {}): Promise<void> {
  const statuses = (await ctx.client.content.listStatuses(filters)).sort((a, b) => a.ref.localeCompare(b.ref));
  if (opts.json) {
    ctx.out(JSON.stringify(statuses, null, 2));
    return;
  }
  const now = Date.now();
  ctx.io.stdout(
    formatTable(
      ['REF', 'SIZE', 'AGE'],
      statuses.map((s) => [s.ref, humanSize(s.offset), humanDuration(now - s.startedAt.getTime())]),
    ),
  );
}

/** `berth content abort REF…`: drop ingests. */
export async function abortContent(ctx: CommandContext, refs: readonly string[]): Promise<void> {
  for (const ref of refs) {
    try {
      await ctx.client.content.abort(ref);
      ctx.out(ref);
    } catch (err) {
      ctx.report(err);
    }
  }
}

function byteCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`invalid size ${JSON.stringify(value)}: want a number of bytes`);
  return Number(value);
}

export function registerContent(program: Command, ctx: CommandContext): void {
  const content = program.command('content').description('manage the content store: blobs by digest, and ingests');
  content
    .command('list')
    .alias('ls')
    .description('list blobs matching any of the filters (e.g. labels."containerd.io/gc.root")')
    .argument('[filters...]', 'containerd filters')
    .option('-q, --quiet', 'print only the digests')
    .option('--json', 'print a JSON array')
    .action((filters: string[], opts: ListOptions) => listContent(ctx, filters, opts));
  content
    .command('get')
    .description('write a blob to stdout')
    .argument('<digest>', 'blob digest')
    .action((digest: string) => getContent(ctx, digest));
  content
    .command('ingest')
    .description('store a blob read from stdin (resumes an interrupted ingest of the same ref)')
    .argument('<ref>', 'ingest reference (names the transaction)')
    .option('--expected-digest <digest>', 'verify the content against this digest')
    .option('--expected-size <bytes>', 'verify the content against this size', byteCount)
    .option('--label <KEY=VALUE...>', 'label the blob at commit (e.g. containerd.io/gc.root=… so GC keeps it)')
    .action((ref: string, opts: IngestCommandOptions) => ingestContent(ctx, ref, opts));
  content
    .command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete blobs; prints each one deleted')
    .argument('<digests...>', 'blob digests')
    .action((digests: string[]) => removeContent(ctx, digests));
  content
    .command('label')
    .description('set labels on a blob (KEY= removes one) and print its labels')
    .argument('<digest>', 'blob digest')
    .argument('[labels...]', 'labels as KEY=VALUE')
    .action((digest: string, labels: string[]) => labelContent(ctx, digest, labels));
  content
    .command('active')
    .description('list ingests in progress: REF SIZE AGE')
    .argument('[filters...]', 'containerd filters, e.g. ref~=^tar-')
    .option('--json', 'print a JSON array')
    .action((filters: string[], opts: { json?: boolean }) => activeContent(ctx, filters, opts));
  content
    .command('abort')
    .description('drop ingests in progress')
    .argument('<refs...>', 'ingest references')
    .action((refs: string[]) => abortContent(ctx, refs));
}
