import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pipe } from './process.js';
import { acceptConnection, connectUnixSocket, listenUnixSocket, receiveFd, sendFd } from './socket.js';

test('a descriptor passed over a unix socket with SCM_RIGHTS arrives with its data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-sock-'));
  const path = join(dir, 'console.sock');
  const listener = listenUnixSocket(path);
  const fds: number[] = [listener];
  try {
    assert.equal(acceptConnection(listener), undefined, 'nobody connected yet');
    const client = connectUnixSocket(path);
    fds.push(client);
    const [r, w] = pipe();
    fds.push(r, w);
    sendFd(client, w, Buffer.from('/dev/pts/42'));
    closeSync(client);
    fds.splice(fds.indexOf(client), 1);
    const conn = acceptConnection(listener) as number;
    assert.ok(conn >= 0);
    fds.push(conn);
    const got = receiveFd(conn);
    assert.equal(got.data.toString(), '/dev/pts/42');
    assert.ok(got.fd !== undefined && got.fd !== w);
    fds.push(got.fd as number);
    writeSync(got.fd as number, 'through the passed fd');
    const buf = Buffer.alloc(64);
    assert.equal(buf.subarray(0, readSync(r, buf)).toString(), 'through the passed fd');
    const closed = receiveFd(conn);
    assert.equal(closed.fd, undefined);
    assert.equal(closed.data.length, 0);
  } finally {
    for (const fd of fds) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('socket paths longer than sun_path are refused', () => {
  assert.throws(() => listenUnixSocket(`/tmp/${'x'.repeat(120)}`), /longer than 107 bytes/);
  assert.throws(() => openSync('/nonexistent-berth', 'r'));
});
