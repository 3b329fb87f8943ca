#!/usr/bin/env -S node --max-semi-space-size=1 --heap-growing-percent=200
import { errorMessage } from '@berth/plugin-api';
import { returnFreedMemoryPromptly, trimMemoryWhenIdle } from '@berth/sys';
import { parseArgs } from 'node:util';
import { loadConfig } from './config.js';
import { BERTH_VERSION, startDaemon } from './daemon.js';

const USAGE = `usage: berthd [options]

  -c, --config PATH     config file (default /etc/berth/config.toml when it exists)
  -a, --address PATH    gRPC socket (default <state>/berthd.sock)
      --root PATH       persistent data (default /var/lib/berth)
      --state PATH      runtime state (default /run/berth)
  -l, --log-level LVL   debug, info, warn or error (default info)
  -v, --version         print the version and exit
  -h, --help            print this help and exit
`;

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        address: { type: 'string', short: 'a' },
        root: { type: 'string' },
        state: { type: 'string' },
        'log-level': { type: 'string', short: 'l' },
        version: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`berthd: ${errorMessage(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`berthd ${BERTH_VERSION}\n`);
    return 0;
  }
  const str = (k: string) => values[k] as string | undefined;
  const config = await loadConfig({
    ...(str('config') ? { config: str('config') } : {}),
    ...(str('address') ? { address: str('address') } : {}),
    ...(str('root') ? { root: str('root') } : {}),
    ...(str('state') ? { state: str('state') } : {}),
    ...(str('log-level') ? { logLevel: str('log-level') } : {}),
  });
  returnFreedMemoryPromptly();
  const daemon = await startDaemon(config);
  const trim = trimMemoryWhenIdle({
    onTrim: (before, after) => {
      const { heapTotal, heapUsed, external } = process.memoryUsage();
      daemon.log.debug('returned idle memory', {
        rssBeforeMiB: mib(before),
        rssAfterMiB: mib(after),
        heapTotalMiB: mib(heapTotal),
        heapUsedMiB: mib(heapUsed),
        externalMiB: mib(external),
      });
    },
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      daemon.log.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  trim.stop();
  await daemon.close();
  return 0;
}

const mib = (bytes: number) => Math.round(bytes / 2 ** 20);

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`berthd: ${errorMessage(err)}\n`);
    process.exit(1);
  },
);
