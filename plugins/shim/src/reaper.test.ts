import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Reaper } from './reaper.js';

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as never;
const reaper = new Reaper(silent);
reaper.start();

const dir = mkdtempSync(join(tmpdir(), 'berth-reaper-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('run captures stdout and stderr, feeds input, and reports the exit code', async () => {
  const r = await reaper.run('sh', ['-c', 'cat; echo err >&2; exit 7'], { input: 'from stdin\n' });
  assert.deepEqual(r, { code: 7, signal: null, stdout: 'from stdin\n', stderr: 'err\n' });
});

test('run reports a command killed by a signal as the signal, with no code', async () => {
  const r = await reaper.run('sh', ['-c', 'kill -TERM $$']);
  assert.equal(r.code, null);
  assert.equal(r.signal, 'SIGTERM');
});

test('run passes descriptors of ours as they are, and runs in cwd', async () => {
  const out = join(dir, 'out');
  const fd = openSync(out, 'w');
  try {
    const r = await reaper.run('sh', ['-c', 'pwd'], { stdio: ['ignore', fd, 'pipe'], cwd: dir });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '', 'stdout went to the descriptor, not a pipe');
  } finally {
    closeSync(fd);
  }
  assert.equal(readFileSync(out, 'utf8'), `${dir}\n`);
});

test('run rejects a command that does not exist, naming it', async () => {
  await assert.rejects(reaper.run('no-such-command-berth', []), /no-such-command-berth.*ENOENT|ENOENT.*no-such-command-berth/);
});

test('many commands at once each get their own exit and output', async () => {
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => reaper.run('sh', ['-c', `echo ${i}; exit ${i}`])));
  assert.deepEqual(
    results.map((r) => [r.code, r.stdout]),
    results.map((_, i) => [i, `${i}\n`]),
  );
});
