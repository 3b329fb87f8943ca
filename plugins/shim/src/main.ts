#!/usr/bin/env node
import { parseFlags } from './flags.js';

const VERSION = '0.1.0';

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** containerd-shim-berth-v1: `start`, `delete`, `-v`, and `serve` (the long-lived shim that `start` spawns). */
async function main(): Promise<void> {
  let flags: ReturnType<typeof parseFlags>;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  if (flags.version) {
    const { shimSnapshotStatus } = await import('./launcher.js');
    const snapshot = shimSnapshotStatus();
    process.stdout.write(
      `containerd-shim-berth-v1:\n  Version:  ${VERSION}\n  Revision: berth\n  Node version: ${process.version}\n` +
        `  Start-up snapshot: ${snapshot.usable ? 'in use' : snapshot.reason}\n\n`,
    );
    return;
  }
  switch (flags.command) {
    case 'start': {
      const { startCommand } = await import('./start-command.js');
      const address = await startCommand(flags, await readAll(process.stdin));
      process.stdout.write(address);
      process.exit(0);
      break;
    }
    case 'delete': {
      const { deleteCommand } = await import('./delete-command.js');
      const { response, warnings } = await deleteCommand(flags);
      for (const w of warnings) process.stderr.write(`${w}\n`);
      process.stdout.write(response);
      process.exit(0);
      break;
    }
    case 'serve': {
      const { serve } = await import('./serve.js');
      await serve(flags);
      break;
    }
    default:
      process.stderr.write(`containerd-shim-berth-v1: unknown command ${JSON.stringify(flags.command)} (start, delete, -v)\n`);
      process.exit(2);
  }
}

main().catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
