import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { pidfdOpen, pipe, reapPidfd } from './process.js';
import { posixSpawn } from './spawn.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-sys-spawn-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Waits for the child to exit and reaps it through a pidfd (nothing else waits for it). */
async function exitOf(pid: number): Promise<{ status: number; signal?: number }> {
  const pidfd = pidfdOpen(pid);
  try {
    for (;;) {
      const exit = reapPidfd(pidfd);
      if (exit) return exit;
      await sleep(5);
    }
  } finally {
    closeSync(pidfd);
  }
}

/** Everything a pipe's read end gives until every writer has closed. */
function readAll(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) chunks.push(Buffer.from(buf.subarray(0, n)));
  return Buffer.concat(chunks).toString();
}

test('posixSpawn runs a command on PATH with the given stdio, cwd and environment, and exits as it does', async () => {
  const [outR, outW] = pipe();
  const [errR, errW] = pipe();
  const devnull = openSync('/dev/null', 'r');
  const file = join(dir, 'out');
  let pid: number;
  try {
    pid = posixSpawn('sh', ['-c', 'echo "$GREETING $(pwd)"; echo oops >&2; touch out; exit 3'], {
      stdio: [devnull, outW, errW],
      cwd: dir,
      env: { PATH: process.env.PATH, GREETING: 'hello' },
    });
  } finally {
    closeSync(devnull);
    closeSync(outW);
    closeSync(errW);
  }
  const exit = await exitOf(pid);
  assert.deepEqual(exit, { pid, status: 3 });
  assert.equal(readAll(outR), `hello ${dir}\n`);
  assert.equal(readAll(errR), 'oops\n');
  closeSync(outR);
  closeSync(errR);
  assert.equal(readFileSync(file, 'utf8'), '');
});

test('the child starts with every signal at its default and none blocked, whatever this process set', async () => {
  const [outR, outW] = pipe();
  const devnull = openSync('/dev/null', 'r');
  // Node ignores SIGPIPE; a child must not inherit that (SigIgn and SigBlk in /proc/self/status are all zero).
  let pid: number;
  try {
    pid = posixSpawn('sh', ['-c', 'grep -E "^Sig(Ign|Blk)" /proc/self/status'], { stdio: [devnull, outW, outW] });
  } finally {
    closeSync(devnull);
    closeSync(outW);
  }
  assert.equal((await exitOf(pid)).status, 0);
  const lines = readAll(outR).trim().split('\n');
  closeSync(outR);
  for (const line of lines) assert.match(line, /^Sig(Ign|Blk):\s+0+$/, line);
});

test('descriptors 0-2 given in another order reach the right places', async () => {
  // The child's stdout is this process's stderr and its stderr a pipe: a dup2 of 2 onto 1 must not be undone.
  const [errR, errW] = pipe();
  const devnull = openSync('/dev/null', 'r');
  let pid: number;
  try {
    pid = posixSpawn('sh', ['-c', 'echo to-stderr-pipe >&2'], { stdio: [devnull, 2, errW] });
  } finally {
    closeSync(devnull);
    closeSync(errW);
  }
  assert.equal((await exitOf(pid)).status, 0);
  assert.equal(readAll(errR), 'to-stderr-pipe\n');
  closeSync(errR);
});

test('a missing command fails at the spawn with ENOENT', () => {
  const devnull = openSync('/dev/null', 'r');
  try {
    assert.throws(() => posixSpawn('no-such-command-berth', [], { stdio: [devnull, devnull, devnull] }), { code: 'ENOENT' });
  } finally {
    closeSync(devnull);
  }
});
