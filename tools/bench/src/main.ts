#!/usr/bin/env node
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBench, whyNotRunnable } from './bench.js';
import { type CliOptions, parseCli, USAGE } from './cli-options.js';
import { formatReport } from './report.js';
import { Resources } from './resources.js';
import { killRunningCommands } from './timed-command.js';

async function main(argv: readonly string[]): Promise<number> {
  let cli: CliOptions | 'help';
  try {
    cli = parseCli(argv);
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (cli === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const why = await whyNotRunnable();
  if (why) {
    process.stderr.write(`bench: cannot run here: ${why}\n`);
    return 3;
  }

  const resources = new Resources();
  const interrupted = (signal: NodeJS.Signals) => {
    process.stderr.write(`bench: ${signal}: stopping the engines and removing the temporary folders\n`);
    killRunningCommands();
    void resources.closeAll().then((failures) => {
      for (const f of failures) process.stderr.write(`bench: could not release ${f}\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    const profileDir = cli.profile ? (cli.profileDir ?? (await mkdtemp(join(tmpdir(), 'berth-bench-profile-')))) : undefined;
    const report = await runBench(
      {
        rounds: cli.rounds,
        quick: cli.quick,
        ...(cli.only ? { only: cli.only } : {}),
        ...(profileDir ? { profileDir } : {}),
        log: (line) => process.stderr.write(`bench: ${line}\n`),
      },
      resources,
    );
    process.stdout.write(formatReport(report));
    if (cli.json) await writeFile(cli.json, `${JSON.stringify(report, null, 2)}\n`);
    return report.metrics.some((m) => m.status === 'failed') ? 1 : 0;
  } catch (err) {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  } finally {
    for (const f of await resources.closeAll()) process.stderr.write(`bench: could not release ${f}\n`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
