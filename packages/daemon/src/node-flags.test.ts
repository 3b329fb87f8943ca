import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BERTHD_NODE_FLAGS } from './node-flags.js';

const main = fileURLToPath(new URL('./main.js', import.meta.url));

test("the berthd bin's shebang passes BERTHD_NODE_FLAGS to node", () => {
  const shebang = readFileSync(main, 'utf8').split('\n', 1)[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${BERTHD_NODE_FLAGS.join(' ')}`);
});

test('node takes the flags (a typo would stop berthd at start)', () => {
  assert.equal(execFileSync(process.execPath, [...BERTHD_NODE_FLAGS, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' }), 'ok');
});
