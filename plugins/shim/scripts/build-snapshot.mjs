#!/usr/bin/env node
// The shim's V8 start-up snapshot, built after `tsc -b` (this package's build script):
//   1. esbuild bundles dist/snapshot-entry.js and all it imports into one CommonJS file, as
//      `node --build-snapshot` takes a single script; koffi (a native addon, which a snapshot
//      cannot hold) is replaced by a stand-in that loads it on first use;
//   2. node, with the shim's own flags, runs that file and writes dist/snapshot/serve.blob;
//   3. dist/snapshot/serve.json records what the blob holds: where it was built (it holds that
//      checkout's absolute paths), node's version and path, the flags,
//      and every input file's size and SHA-256, so that start-command.ts uses the blob only while
//      all of those still hold (see snapshot.ts), and main.js otherwise.
// The blob holds this checkout's absolute paths, so nx must not restore this package's build from
// its cache into another checkout: package.json turns the cache off for it (tsc -b stays incremental).
//
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(pkg, 'dist');
const out = join(dist, 'snapshot');
const { SHIM_NODE_FLAGS } = await import(pathToFileURL(join(dist, 'launcher.js')).href);
const { SNAPSHOT_BLOB, SNAPSHOT_INFO, SNAPSHOT_BUNDLE } = await import(pathToFileURL(join(dist, 'snapshot.js')).href);

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const koffiPath = createRequire(join(pkg, 'package.json')).resolve('koffi');
/** Each module's own `import.meta.url`, as its file's URL (esbuild leaves it empty in CommonJS). */
const ownImportMetaUrl = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta.url')) return undefined;
      return { contents: text.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)), loader: 'js' };
    });
  },
};
const result = await build({
  entryPoints: [join(dist, 'snapshot-entry.js')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outfile: SNAPSHOT_BUNDLE,
  alias: { koffi: join(pkg, 'scripts', 'koffi-at-run-time.cjs') },
  define: { KOFFI_PATH: JSON.stringify(koffiPath) },
  plugins: [ownImportMetaUrl],
  metafile: true,
  logLevel: 'warning',
});

const built = spawnSync(process.execPath, [...SHIM_NODE_FLAGS, '--snapshot-blob', SNAPSHOT_BLOB, '--build-snapshot', SNAPSHOT_BUNDLE], {
  stdio: ['ignore', 'inherit', 'pipe'],
  encoding: 'utf8',
});
if (built.status !== 0) {
  process.stderr.write(built.stderr);
  process.stderr.write(`build-snapshot: node --build-snapshot failed (exit ${built.status ?? built.signal})\n`);
  process.exit(1);
}

// Every file the bundle was made of, and the stand-in's target.
const inputs = [...Object.keys(result.metafile.inputs).map((p) => resolve(process.cwd(), p)), koffiPath].map((path) => {
  const bytes = readFileSync(path);
  return { path, size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
});
const info = { blob: SNAPSHOT_BLOB, node: process.version, execPath: realpathSync(process.execPath), flags: SHIM_NODE_FLAGS, inputs };
writeFileSync(SNAPSHOT_INFO, `${JSON.stringify(info, null, 1)}\n`);
process.stdout.write(
  `build-snapshot: ${SNAPSHOT_BLOB} (${(statSync(SNAPSHOT_BLOB).size / 1048576).toFixed(1)} MiB, ${inputs.length} input files)\n`,
);
