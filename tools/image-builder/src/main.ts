#!/usr/bin/env node
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildPreset, PRESETS } from './presets.js';
import { writeDockerArchive } from './docker-archive.js';
import { writeOciArchive } from './oci-archive.js';

const USAGE = `usage: berth-build-image --preset NAME --out DIR [--oci-archive FILE.tar] [--docker-archive FILE.tar]
                         [--gzip-level 0-9 | --uncompressed]
presets: ${Object.keys(PRESETS).join(', ')}`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      preset: { type: 'string' },
      out: { type: 'string' },
      'oci-archive': { type: 'string' },
      'docker-archive': { type: 'string' },
      'gzip-level': { type: 'string' },
      uncompressed: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.preset || !values.out) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const started = performance.now();
  const level = values['gzip-level'] === undefined ? undefined : Number(values['gzip-level']);
  const result = await buildPreset(values.preset, resolve(values.out), {
    ...(level === undefined ? {} : { gzipLevel: level }),
    ...(values.uncompressed ? { compression: 'none' as const } : {}),
  });
  if (values['oci-archive']) await writeOciArchive(result.layoutDir, resolve(values['oci-archive']));
  if (values['docker-archive']) await writeDockerArchive(result.layoutDir, resolve(values['docker-archive']));
  process.stdout.write(
    `${JSON.stringify(
      {
        name: result.name,
        layout: result.layoutDir,
        manifest: result.manifest.digest,
        config: result.config.digest,
        layers: result.layers.map((l) => ({ digest: l.digest, size: l.size, diffId: l.diffId })),
        totalSize: result.totalSize,
        seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
      },
      null,
      2,
    )}\n`,
  );
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`berth-build-image: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
