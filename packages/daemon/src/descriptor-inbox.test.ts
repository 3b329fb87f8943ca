import { silentLogger } from '@berth/core';
import { NotFoundError } from '@berth/plugin-api';
import { closeFd, connectUnixSocket, sendFd } from '@berth/sys';
import assert from 'node:assert/strict';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DescriptorInboxServer } from './descriptor-inbox.js';

const dir = mkdtempSync(join(tmpdir(), 'berth-fd-inbox-'));
const file = join(dir, 'data');
let inbox: DescriptorInboxServer;

before(async () => {
  writeFileSync(file, 'passed by descriptor');
  inbox = await DescriptorInboxServer.listen(join(dir, 'berthd.sock.fd'), silentLogger, {
    sendTimeoutMs: 200,
    unclaimedMs: 300,
    takeWaitMs: 300,
    maxHeld: 2,
  });
});

after(async () => {
  await inbox.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Send `file`'s descriptor with `token` as a client does: connect, one message, close. */
function send(token: string): void {
  const fd = openSync(file, 'r');
  const conn = connectUnixSocket(inbox.path);
  try {
    sendFd(conn, fd, Buffer.from(token));
  } finally {
    closeFd(conn);
    closeSync(fd);
  }
}

const openFds = () => readdirSync('/proc/self/fd').length;

test('the socket is 0600', () => {
  assert.equal(statSync(inbox.path).mode & 0o777, 0o600);
});

test('a descriptor sent with a token is taken by that token, once, and is the same file', async () => {
  send('token-aaaaaaaaaaaaaaaa');
  const fd = await inbox.take('token-aaaaaaaaaaaaaaaa');
  try {
    assert.equal(fstatSync(fd).ino, statSync(file).ino);
  } finally {
    closeSync(fd);
  }
  await assert.rejects(inbox.take('token-aaaaaaaaaaaaaaaa'), NotFoundError);
});

test('take waits for a descriptor still on its way', async () => {
  const taken = inbox.take('token-bbbbbbbbbbbbbbbb');
  await sleep(50);
  send('token-bbbbbbbbbbbbbbbb');
  const fd = await taken;
  assert.equal(fstatSync(fd).ino, statSync(file).ino);
  closeSync(fd);
});

test('a token nobody sent is NotFound after the wait; an aborted take gives up at once', async () => {
  const started = Date.now();
  await assert.rejects(inbox.take('token-never-sent-xxxxx'), NotFoundError);
  assert.ok(Date.now() - started >= 250);
  const abort = new AbortController();
  const taken = inbox.take('token-aborted-xxxxxxxx', abort.signal);
  abort.abort();
  await assert.rejects(taken, NotFoundError);
  await assert.rejects(inbox.take('bad token!'), NotFoundError);
});

test('unclaimed descriptors are closed; malformed tokens and too many at once are refused', async () => {
  const before = openFds();
  send('token-unclaimed-xxxxxx');
  send('short'); // malformed: closed on arrival
  send('token-held-1-xxxxxxxxx');
  send('token-held-3-xxxxxxxxx'); // maxHeld is 2: closed on arrival
  for (const deadline = Date.now() + 2000; openFds() !== before + 2 && Date.now() < deadline; ) await sleep(10);
  assert.equal(openFds(), before + 2, 'two held');
  await assert.rejects(inbox.take('token-held-3-xxxxxxxxx'), NotFoundError);
  for (const deadline = Date.now() + 2000; openFds() !== before && Date.now() < deadline; ) await sleep(20);
  assert.equal(openFds(), before, 'the unclaimed ones were closed');
});

test('a client that connects and sends nothing is dropped', async () => {
  const conn = connectUnixSocket(inbox.path);
  const before = openFds(); // the client's end, not yet the server's: it accepts on the event loop
  try {
    for (const deadline = Date.now() + 1000; openFds() === before && Date.now() < deadline; ) await sleep(5);
    assert.equal(openFds(), before + 1, 'berthd holds the connection');
    for (const deadline = Date.now() + 2000; openFds() !== before && Date.now() < deadline; ) await sleep(20);
    assert.equal(openFds(), before, 'and drops it after sendTimeoutMs');
  } finally {
    closeFd(conn);
  }
});

test('close fails waiting takes and removes the socket', async () => {
  const other = await DescriptorInboxServer.listen(join(dir, 'other.sock.fd'), silentLogger);
  const taken = assert.rejects(other.take('token-waiting-xxxxxxxx'), NotFoundError);
  await other.close();
  await taken;
  assert.equal(existsSync(other.path), false);
});
