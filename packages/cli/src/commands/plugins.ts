import type { Platform, PluginInfo } from '@berth/plugin-api';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { formatTable } from '../format.js';

export interface ListPluginsOptions {
  readonly detailed?: boolean;
  readonly json?: boolean;
}

export async function listPlugins(ctx: CommandContext, filters: readonly string[], opts: ListPluginsOptions = {}): Promise<void> {
  const plugins = await ctx.client.plugins(filters);
  if (opts.json) ctx.out(JSON.stringify(plugins, null, 2));
  else if (opts.detailed) ctx.io.stdout(plugins.map(formatPluginDetails).join('\n'));
  else ctx.io.stdout(formatPluginTable(plugins));
}

/** As `ctr plugins ls`: TYPE ID PLATFORMS STATUS, with status ok, skip or error. */
export function formatPluginTable(plugins: readonly PluginInfo[]): string {
  return formatTable(
    ['TYPE', 'ID', 'PLATFORMS', 'STATUS'],
    plugins.map((p) => [p.type, p.id, formatPlatforms(p.platforms), statusWord(p)]),
  );
}

/** One block per plugin, as `ctr plugins ls --detailed`. */
export function formatPluginDetails(p: PluginInfo): string {
  const rows: [string, string][] = [
    ['Type:', p.type],
    ['ID:', p.id],
  ];
  const list = (title: string, items: readonly string[]) => {
    if (items.length === 0) return;
    rows.push([title, '']);
    for (const item of items) rows.push(['', item]);
  };
  list('Requires:', p.requires);
  if (p.platforms.length > 0) rows.push(['Platforms:', formatPlatforms(p.platforms)]);
  list(
    'Exports:',
    Object.keys(p.exports)
      .sort()
      .map((k) => `${k}    ${p.exports[k]}`),
  );
  list('Capabilities:', p.capabilities);
  rows.push(['Status:', statusWord(p)]);
  if (p.status.state === 'skipped') rows.push(['Reason:', p.status.reason]);
  if (p.status.state === 'error') rows.push(['Error:', p.status.message]);
  const width = Math.max(...rows.map(([k]) => k.length)) + 4;
  return `${rows.map(([k, v]) => `${k.padEnd(width)}${v}`.trimEnd()).join('\n')}\n`;
}

function formatPlatforms(platforms: readonly Platform[]): string {
  if (platforms.length === 0) return '-';
  return platforms.map((p) => [p.os, p.architecture, p.variant].filter(Boolean).join('/')).join(',');
}

function statusWord(p: PluginInfo): string {
  return p.status.state === 'skipped' ? 'skip' : p.status.state;
}

export function registerPlugins(program: Command, ctx: CommandContext): void {
  const plugins = program.command('plugins').alias('plugin').description('inspect the daemon\'s plugins');
  plugins
    .command('list')
    .alias('ls')
    .description('list plugins matching any of the filters (e.g. type==io.containerd.grpc.v1)')
    .argument('[filters...]', 'containerd filters')
    .option('-d, --detailed', 'show requires, exports and errors')
    .option('--json', 'print a JSON array')
    .action((filters: string[], opts: ListPluginsOptions) => listPlugins(ctx, filters, opts));
}
