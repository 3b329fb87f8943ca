import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';
import { formatLabels, formatTable, parseLabels } from '../format.js';

export interface ListNamespacesOptions {
  readonly quiet?: boolean;
  readonly json?: boolean;
}

export async function listNamespaces(ctx: CommandContext, opts: ListNamespacesOptions = {}): Promise<void> {
  const namespaces = (await ctx.client.namespaces.list()).sort((a, b) => a.name.localeCompare(b.name));
  if (opts.json) ctx.out(JSON.stringify(namespaces, null, 2));
  else if (opts.quiet) for (const ns of namespaces) ctx.out(ns.name);
  else ctx.io.stdout(formatTable(['NAME', 'LABELS'], namespaces.map((ns) => [ns.name, formatLabels(ns.labels)])));
}

export async function createNamespace(ctx: CommandContext, name: string, labelArgs: readonly string[] = []): Promise<void> {
  const labels = parseLabels(labelArgs);
  await ctx.client.namespaces.create(name, labels);
}

/** Set each `KEY=VALUE`; `KEY=` removes the label. Other labels stay. */
export async function labelNamespace(ctx: CommandContext, name: string, labelArgs: readonly string[] = []): Promise<void> {
  const labels = parseLabels(labelArgs);
  const keys = Object.keys(labels);
  if (keys.length === 0) return;
  await ctx.client.namespaces.update(
    name,
    labels,
    keys.map((k) => `labels.${k}`),
  );
}

/** Removes each namespace it can, printing its name; reports the others and exits 1. */
export async function removeNamespaces(ctx: CommandContext, names: readonly string[]): Promise<void> {
  for (const name of names) {
    try {
      await ctx.client.namespaces.delete(name);
      ctx.out(name);
    } catch (err) {
      ctx.report(err);
    }
  }
}

export function registerNamespaces(program: Command, ctx: CommandContext): void {
  const ns = program.command('namespaces').alias('ns').description('manage namespaces');
  ns.command('list')
    .alias('ls')
    .description('list namespaces')
    .option('-q, --quiet', 'print only the names')
    .option('--json', 'print a JSON array')
    .action((opts: ListNamespacesOptions) => listNamespaces(ctx, opts));
  ns.command('create')
    .alias('c')
    .description('create a namespace')
    .argument('<name>', 'namespace name')
    .argument('[labels...]', 'labels as KEY=VALUE')
    .action((name: string, labels: string[]) => createNamespace(ctx, name, labels));
  ns.command('label')
    .description('set labels on a namespace (KEY= removes one)')
    .argument('<name>', 'namespace name')
    .argument('[labels...]', 'labels as KEY=VALUE')
    .action((name: string, labels: string[]) => labelNamespace(ctx, name, labels));
  ns.command('remove')
    .alias('rm')
    .description('remove namespaces; carries on past failures and exits 1 if any failed')
    .argument('<names...>', 'namespace names')
    .action((names: string[]) => removeNamespaces(ctx, names));
}
