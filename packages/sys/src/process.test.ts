import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, readSync, writeSync } from 'node:fs';
import { test } from 'node:test';
import {
  closeFd,
  eventfd,
  isChildSubreaper,
  pidfdOpen,
  pipe,
  readEventfd,
  reapPid,
  reapPidfd,
  setChildSubreaper,
  signalEventfd,
  watchReadable,
} from './process.js';

test('pipe2 gives a read and a write end', () => {
  const [r, w] = pipe();
  try {
    writeSync(w, 'abc');
    const buf = Buffer.alloc(8);
    assert.equal(readSync(r, buf), 3);
    assert.equal(buf.subarray(0, 3).toString(), 'abc');
  } finally {
    closeSync(r);
    closeSync(w);
  }
});

test('an eventfd wakes a readable watch and reads back its counter', async () => {
  const fd = eventfd();
  try {
    assert.equal(readEventfd(fd), 0n);
    const woken = new Promise<bigint>((resolve) => {
      const watch = watchReadable(fd, () => {
        watch.close();
        resolve(readEventfd(fd));
      });
    });
    signalEventfd(fd, 2n);
    signalEventfd(fd);
    assert.equal(await woken, 3n);
  } finally {
    closeFd(fd);
  }
});

test('a pidfd becomes readable at exit; waitid(P_PIDFD) reaps only that child', async () => {
  // A grandchild re-parented to us would need a subreaper; a direct child is enough here,
  // as long as libuv never waits for it: spawn through sh and take the pid of its `exec`.
  const child = spawn('sh', ['-c', 'exit 7'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // libuv owns this child, so reaping it here would steal its status: only check the
  // pidfd's readiness, and let libuv collect it.
  const pidfd = pidfdOpen(child.pid as number);
  try {
    await new Promise<void>((resolve) => {
      const watch = watchReadable(pidfd, () => {
        watch.close();
        resolve();
      });
    });
    assert.equal(await exited, 7);
  } finally {
    closeFd(pidfd);
  }
});

test('as a subreaper, orphans become ours: waitid reports exit codes and signals', async () => {
  setChildSubreaper();
  assert.equal(isChildSubreaper(), true);
  const orphan = async (script: string) => {
    // sh prints the background child's pid and exits: the child re-parents to this process.
    const out = execFileSync('sh', ['-c', `sh -c '${script}' >/dev/null 2>&1 & echo $!`], { encoding: 'utf8' });
    const pid = Number(out.trim());
    const pidfd = pidfdOpen(pid);
    try {
      await new Promise<void>((resolve) => {
        const watch = watchReadable(pidfd, () => {
          watch.close();
          resolve();
        });
      });
      return reapPidfd(pidfd);
    } finally {
      closeFd(pidfd);
    }
  };
  const exit5 = await orphan('sleep 0.2; exit 5');
  assert.equal(exit5?.status, 5);
  assert.equal(exit5?.signal, undefined);
  const killed = await orphan('sleep 0.2; kill -9 $$');
  assert.equal(killed?.status, 137);
  assert.equal(killed?.signal, 9);
  // A running orphan: reapPid says undefined until it ends, then ECHILD once reaped.
  const out = execFileSync('sh', ['-c', "sh -c 'sleep 0.3' >/dev/null 2>&1 & echo $!"], { encoding: 'utf8' });
  const pid = Number(out.trim());
  assert.equal(reapPid(pid), undefined);
  for (const deadline = Date.now() + 5000; ; await new Promise((r) => setTimeout(r, 20))) {
    const exit = reapPid(pid);
    if (exit) {
      assert.deepEqual(exit, { pid, status: 0 });
      break;
    }
    assert.ok(Date.now() < deadline, 'orphan never exited');
  }
  assert.throws(() => reapPid(pid), { code: 'ECHILD' });
});
