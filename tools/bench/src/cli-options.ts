import { tmpdir } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { metricNames } from './bench.js';

export const USAGE = `usage: npm run bench [-- options]   (node tools/bench/dist/main.js [options])

Runs the same ctr workloads against containerd 1.6 and berthd side by side and prints, per
metric, each engine's median, min and max and the ratio berth/containerd.

  --rounds N          rounds per metric, engines interleaved (default 5)
  --only a,b,…        only these metrics (names below)
  --quick             smoke run: 1 round, small image only, 16 MiB ingests (< 60 s)
  --json FILE         also write the report as JSON
  --profile           start berthd with node --cpu-prof and print its hot functions
  --profile-dir DIR   where the .cpuprofile goes (default: a new folder under ${tmpdir()})
  -h, --help

metrics: ${metricNames(false).join(', ')}
with --quick: ${metricNames(true).join(', ')}
`;

export interface CliOptions {
  readonly rounds: number;
  readonly quick: boolean;
  readonly only?: string[];
  readonly json?: string;
  readonly profile: boolean;
  readonly profileDir?: string;
}

/** The bench's command line; throws with a message for the usage error. */
export function parseCli(argv: readonly string[]): CliOptions | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: 'string' },
      only: { type: 'string' },
      quick: { type: 'boolean' },
      json: { type: 'string' },
      profile: { type: 'boolean' },
      'profile-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const quick = !!values.quick;
  const rounds = values.rounds === undefined ? (quick ? 1 : 5) : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds wants a whole number ≥ 1, not ${values.rounds}`);
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const known = metricNames(quick);
  const unknown = (only ?? []).filter((n) => !known.includes(n));
  if (unknown.length) throw new Error(`unknown metric ${unknown.join(', ')}${quick ? ' with --quick' : ''} (known: ${known.join(', ')})`);
  return {
    rounds,
    quick,
    ...(only?.length ? { only } : {}),
    ...(values.json ? { json: resolve(values.json) } : {}),
    profile: !!values.profile || values['profile-dir'] !== undefined,
    ...(values['profile-dir'] ? { profileDir: resolve(values['profile-dir']) } : {}),
  };
}

