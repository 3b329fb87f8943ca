import type { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandContext } from '../command-context.js';

const PACKAGE_DIR = fileURLToPath(new URL('../..', import.meta.url));

export const CLI_VERSION = (JSON.parse(readFileSync(join(PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string })
  .version;

/** Client, then server, as `ctr version`; a daemon that cannot be reached fails after the client part. */
export async function printVersion(ctx: CommandContext): Promise<void> {
  ctx.out(['Client:', `  Version:  ${CLI_VERSION}`, `  Revision: ${gitRevision()}`, `  Node version: ${process.version}`].join('\n'));
  ctx.out('');
  const [version, server] = await Promise.all([ctx.client.version(), ctx.client.server()]);
  ctx.out(['Server:', `  Version:  ${version.version}`, `  Revision: ${version.revision}`, `  UUID: ${server.uuid}`].join('\n'));
}

/** The commit the CLI runs from, when it runs from a git checkout. */
function gitRevision(): string {
  try {
    const gitDir = join(PACKAGE_DIR, '..', '..', '.git');
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (!head.startsWith('ref: ')) return head;
    const ref = head.slice(5);
    if (existsSync(join(gitDir, ref))) return readFileSync(join(gitDir, ref), 'utf8').trim();
    const packed = readFileSync(join(gitDir, 'packed-refs'), 'utf8');
    return packed.split('\n').find((l) => l.endsWith(` ${ref}`))?.split(' ')[0] ?? '';
  } catch {
    return '';
  }
}

export function registerVersion(program: Command, ctx: CommandContext): void {
  program
    .command('version')
    .description('print the client and server versions')
    .action(() => printVersion(ctx));
}
