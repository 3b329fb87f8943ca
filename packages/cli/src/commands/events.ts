import type { EventEnvelope } from '@berth/client';
import type { Command } from 'commander';
import type { CommandContext } from '../command-context.js';

/** Print events as they come until SIGINT/SIGTERM (then return normally: exit 0). */
export async function watchEvents(ctx: CommandContext, filters: readonly string[]): Promise<void> {
  const signal = ctx.io.interrupted();
  for await (const env of ctx.client.events.subscribe(filters, { signal })) ctx.out(formatEvent(env));
}

/** `TIMESTAMP NAMESPACE TOPIC EVENT-JSON`, as `ctr events` prints, with an ISO 8601 timestamp. */
export function formatEvent(env: EventEnvelope): string {
  const { typeUrl, value, data } = env.event;
  const json = data ? data : typeUrl ? { typeUrl, value: Buffer.from(value).toString('base64') } : {};
  return `${env.timestamp.toISOString()} ${env.namespace} ${env.topic} ${JSON.stringify(json)}`;
}

export function registerEvents(program: Command, ctx: CommandContext): void {
  program
    .command('events')
    .alias('event')
    .description('print events as they happen, until interrupted')
    .argument('[filters...]', 'containerd filters, e.g. topic~="/namespaces/" or namespace==default')
    .action((filters: string[]) => watchEvents(ctx, filters));
}
