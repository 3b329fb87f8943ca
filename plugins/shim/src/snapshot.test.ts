import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type SnapshotInfo, snapshotProblem } from './snapshot.js';
import { shimSnapshotStatus } from './launcher.js';

const FLAGS = ['--lite-mode'];

test('a snapshot is used only by the node that built it, with its flags, while its inputs are unchanged', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-snapshot-'));
  try {
    const input = join(dir, 'serve.js');
    writeFileSync(input, 'export const x = 1;\n');
    const digest = createHash('sha256').update('export const x = 1;\n').digest('hex');
    const blob = join(dir, 'serve.blob');
    const info: SnapshotInfo = {
      blob,
      node: process.version,
      execPath: realpathSync(process.execPath),
      flags: FLAGS,
      inputs: [{ path: input, size: 20, sha256: digest }],
    };
    assert.equal(snapshotProblem(info, FLAGS, process.execPath, blob), undefined);
    assert.match(snapshotProblem(info, FLAGS, process.execPath, '/elsewhere/serve.blob') ?? '', /built as .*serve\.blob/);
    assert.match(snapshotProblem({ ...info, node: 'v18.0.0' }, FLAGS, process.execPath, blob) ?? '', /built by node v18\.0\.0/);
    assert.match(snapshotProblem({ ...info, execPath: '/opt/other/node' }, FLAGS, process.execPath, blob) ?? '', /built by \/opt\/other\/node/);
    assert.match(snapshotProblem(info, ['--max-old-space-size=64'], process.execPath, blob) ?? '', /built with flags --lite-mode/);
    // The same size, other content: what an edit of one character looks like.
    writeFileSync(input, 'export const x = 2;\n');
    assert.match(snapshotProblem(info, FLAGS, process.execPath, blob) ?? '', /serve\.js changed since the build/);
    rmSync(input);
    assert.match(snapshotProblem(info, FLAGS, process.execPath, blob) ?? '', /serve\.js is gone/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the build of this checkout made a snapshot that is current', () => {
  // `npm run build` (scripts/build-snapshot.mjs after tsc) makes it; a shim starts from main.js without one.
  assert.deepEqual(shimSnapshotStatus().usable, true, shimSnapshotStatus().reason);
});
