import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { CommandContext } from '../command-context.js';
import { UsageError } from '../exit-code.js';
import { formatTable, parseDuration } from '../format.js';
import { labelsColumn, type ListOptions } from './content.js';

/** `2024-05-01T12:00:00+02:00`: Go's RFC 3339 in local time, as `ctr leases ls` prints it. */
export function localRfc3339(date: Date): string {
  const offset = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + offset * 60_000).toISOString().replace(/\.\d{3}Z$/, '');
  if (offset === 0) return `${local}Z`;
  const sign = offset > 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** `berth leases ls`: ID CREATED AT LABELS. */
export async function listLeases(ctx: CommandContext, filters: readonly string[], opts: ListOptions = {}): Promise<void> {
  const leases = (await ctx.client.leases.list(filters)).sort((a, b) => a.id.localeCompare(b.id));
  if (opts.json) ctx.out(JSON.stringify(leases, null, 2));
  else if (opts.quiet) for (const l of leases) ctx.out(l.id);
  else {
    ctx.io.stdout(
      formatTable(
        ['ID', 'CREATED AT', 'LABELS'],
        leases.map((l) => [l.id, localRfc3339(l.createdAt), labelsColumn(l.labels)]),
      ),
    );
  }
}

export interface CreateLeaseCommandOptions {
  readonly id?: string;
  /** Milliseconds; 0: never expires. */
  readonly expires?: number;
}

/** `berth leases create [k=v…]`: prints the new lease's id. A bare `k` is an empty label, as ctr. */
export async function createLease(ctx: CommandContext, labelArgs: readonly string[], opts: CreateLeaseCommandOptions = {}): Promise<void> {
  const labels: Record<string, string> = {};
  for (const arg of labelArgs) {
    const eq = arg.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid label ${JSON.stringify(arg)}: want KEY=VALUE`);
    if (eq === -1) labels[arg] = '';
    else labels[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  const expires = opts.expires ?? 24 * 3_600_000;
  const lease = await ctx.client.leases.create({
    ...(opts.id ? { id: opts.id } : {}),
    labels,
    ...(expires > 0 ? { expireAfterMs: expires } : {}),
  });
  ctx.out(lease.id);
}

/** `berth leases rm ID…`: prints each id removed; with --sync, waits for GC after the last one (as ctr). */
export async function removeLeases(ctx: CommandContext, ids: readonly string[], opts: { sync?: boolean } = {}): Promise<void> {
  for (const [i, id] of ids.entries()) {
    try {
      await ctx.client.leases.delete(id, { sync: !!opts.sync && i === ids.length - 1 });
      ctx.out(id);
    } catch (err) {
      ctx.report(err);
    }
  }
}

function durationOption(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    throw err instanceof UsageError ? new InvalidArgumentError(err.message) : err;
  }
}

export function registerLeases(program: Command, ctx: CommandContext): void {
  const leases = program.command('leases').alias('lease').description('manage leases, which keep content from garbage collection');
  leases
    .command('list')
    .alias('ls')
    .description('list leases matching any of the filters')
    .argument('[filters...]', 'containerd filters, e.g. id==abc or labels."k"==v')
    .option('-q, --quiet', 'print only the ids')
    .option('--json', 'print a JSON array')
    .action((filters: string[], opts: ListOptions) => listLeases(ctx, filters, opts));
  leases
    .command('create')
    .description('create a lease and print its id')
    .argument('[labels...]', 'labels as KEY=VALUE')
    .option('--id <id>', 'lease id (default: generated)')
    .option('-x, --expires <duration>', 'expire after this long, e.g. 30m or 24h; 0 never expires (default: 24h)', durationOption)
    .action((labels: string[], opts: CreateLeaseCommandOptions) => createLease(ctx, labels, opts));
  leases
    .command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete leases; prints each one deleted')
    .argument('<ids...>', 'lease ids')
    .option('--sync', 'wait until garbage collection has removed what the leases held')
    .action((ids: string[], opts: { sync?: boolean }) => removeLeases(ctx, ids, opts));
}
