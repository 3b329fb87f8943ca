#!/usr/bin/env node
// Each package's test script: `node ../../tools/run-tests.mjs dist [node --test options…]`.
//
// Finds every *.test.js under the directory (relative to the current directory, skipping
// node_modules), sorts them, and runs `node --test` on them with stdio inherited, exiting
// with its code. Reporter: tap when CI is set (so `# pass N` / `# fail N` close the output),
// spec on a terminal, node's default otherwise. A package without test files is an error.
// Options after the directory (e.g. --test-concurrency=1, --test-timeout=120000,
// --test-name-pattern=…) go to `node --test`.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const argv = process.argv.slice(2);
const dirIndex = argv.findIndex((a) => !a.startsWith('-'));
const dir = dirIndex === -1 ? 'dist' : argv[dirIndex];
const extra = argv.filter((_, i) => i !== dirIndex);

function find(root) {
  const out = [];
  const walk = (d) => {
    let entries;
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch (err) {
      if (d === root && err.code !== 'ENOENT') throw err;
      return;
    }
    for (const e of entries) {
      if (e.name === 'node_modules') continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.js') && (e.isFile() || e.isSymbolicLink())) out.push(p);
    }
  };
  walk(root);
  return out.sort();
}

const files = find(path.resolve(dir)).map((f) => path.relative(process.cwd(), f) || f);
if (files.length === 0) {
  console.error(`no test files under ${dir}`);
  process.exit(1);
}

const ci = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
const reporter = extra.some((a) => a.startsWith('--test-reporter'))
  ? []
  : ci
    ? ['--test-reporter=tap']
    : process.stdout.isTTY
      ? ['--test-reporter=spec']
      : [];

// Failures also go to a file of their own, for the bootstrap to repeat at the end of the run.
const failuresDir = process.env.BERTH_TEST_FAILURES_DIR;
const ownReporter = extra.some((a) => a.startsWith('--test-reporter'));
const failures =
  failuresDir && !ownReporter
  ? [
      ...(reporter.length > 0 ? reporter : ['--test-reporter=tap']), // node's own choice off a terminal
      '--test-reporter-destination=stdout',
      `--test-reporter=${new URL('./failures-reporter.mjs', import.meta.url).href}`,
      `--test-reporter-destination=${path.join(failuresDir, `${path.basename(process.cwd())}-${process.pid}.txt`)}`,
    ]
  : reporter;

const child = spawn(process.execPath, ['--test', ...failures, ...extra, ...files], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // A terminal's Ctrl-C reaches the child directly; pass on what comes only to us.
    if (sig !== 'SIGINT' || !process.stdin.isTTY) child.kill(sig);
  });
}
child.on('error', (err) => {
  console.error(`cannot run node --test: ${err.message}`);
  process.exit(127);
});
child.on('exit', (code, signal) => {
  process.exit(code ?? 128 + (os.constants.signals[signal] ?? 0));
});
