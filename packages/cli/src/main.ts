#!/usr/bin/env node
import { runCli } from './cli.js';

// `berth events | head -1`: a closed pipe ends the output, not in a crash.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

const code = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  interrupted: () => {
    const controller = new AbortController();
    // Once: a second Ctrl-C kills at once.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());
    return controller.signal;
  },
});
// stdout and stderr are synchronous for files, pipes and terminals on Linux: nothing is lost.
process.exit(code);
