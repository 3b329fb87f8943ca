import { TtrpcClient, ttrpcService } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { shimProtoRoot, TASK_SERVICE } from './shim-proto.js';
import { shimLockPath, shimSocketPath } from './socket-address.js';
import { WireWriter } from './wire.js';
import { alive } from './test-support.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

function run(args: string[], opts: { cwd?: string; input?: Buffer } = {}): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [MAIN, ...args], { cwd: opts.cwd, encoding: 'buffer', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr: stderr.toString() });
    });
    child.stdin?.end(opts.input);
  });
}

const dir = mkdtempSync(join(tmpdir(), 'berth-shim-main-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('-v prints the version', async () => {
  const r = await run(['-v']);
  assert.equal(r.code, 0);
  assert.match(r.stdout.toString(), /^containerd-shim-berth-v1:\n {2}Version: {2}\d+\.\d+\.\d+\n/);
});

test('delete answers a DeleteResponse with status 137 and the init pid, as the stock shim does', async () => {
  const bundle = join(dir, 'dead');
  mkdirSync(join(bundle, 'rootfs'), { recursive: true });
  writeFileSync(join(bundle, 'init.pid'), '4321');
  const before = Date.now();
  const r = await run(['-namespace', 'berth-main-test', '-address', join(dir, 'none.sock'), '-id', 'dead', '-bundle', bundle, 'delete']);
  assert.equal(r.code, 0, r.stderr);
  const type = shimProtoRoot().lookupType('containerd.task.v2.DeleteResponse');
  const res = type.toObject(type.decode(r.stdout), { longs: Number }) as { pid: number; exitStatus: number; exitedAt: { seconds: number } };
  assert.equal(res.pid, 4321);
  assert.equal(res.exitStatus, 137);
  assert.ok(Math.abs(res.exitedAt.seconds * 1000 - before) < 10_000);
});

test('delete removes the socket and lock file of a group shim that is gone, and leaves those of one that listens', async () => {
  // A socket nobody listens on any more: its process was killed before it could remove it.
  const dead = join(dir, 'dead-shim.sock');
  const listener = execFile(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(dead)}, () => console.log('up'))`]);
  await new Promise((resolve) => listener.stdout?.once('data', resolve));
  listener.kill('SIGKILL');
  await new Promise((resolve) => listener.once('exit', resolve));
  assert.ok(existsSync(dead));
  writeFileSync(shimLockPath(dead), '');
  // One that a process still listens on (it never answers: a busy shim is not taken for a dead one).
  const live = join(dir, 'live-shim.sock');
  const server = createServer(() => {}).listen(live);
  await once(server, 'listening');
  writeFileSync(shimLockPath(live), '');
  try {
    for (const [name, socket] of [['of-dead', dead], ['of-live', live]] as const) {
      const bundle = join(dir, name);
      mkdirSync(bundle, { recursive: true });
      writeFileSync(join(bundle, 'address'), `unix://${socket}`);
      const r = await run(['-namespace', 'berth-main-test', '-address', join(dir, 'none.sock'), '-id', name, '-bundle', bundle, 'delete']);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.equal(existsSync(dead), false);
    assert.equal(existsSync(shimLockPath(dead)), false);
    assert.ok(existsSync(live));
    assert.ok(existsSync(shimLockPath(live)));
  } finally {
    server.close();
  }
});

test('start without a bundle config fails with a message and a non-zero status', async () => {
  const r = await run(['-namespace', 'ns', '-address', '/x.sock', '-id', 'a', 'start'], { cwd: dir });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /config\.json/);
});

test('serve run by hand reports a bad command line on stderr and exits 1 (descriptor 3 is not a report pipe then)', async () => {
  const r = await run(['-namespace', 'x', 'serve']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /serve needs -socket/);
});

describe('start and the long-lived shim', { skip: process.getuid?.() !== 0 && 'needs root (/run/berth)' }, () => {
  const address = join(dir, 'containerd.sock'); // only hashed: no daemon is needed for start
  const namespace = 'berth-main-test';
  const socket = shimSocketPath({ address, namespace, group: '' });
  const shimPids = new Set<number>();

  after(async () => {
    for (const pid of shimPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    rmSync(socket, { force: true });
    rmSync(shimLockPath(socket), { force: true });
  });

  const bundle = (id: string, annotations: Record<string, string> = {}) => {
    const b = join(dir, id);
    mkdirSync(b, { recursive: true });
    writeFileSync(join(b, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', annotations }));
    return b;
  };
  const start = (id: string, b: string) =>
    run(['-namespace', namespace, '-address', address, '-publish-binary', '/bin/true', '-id', id, 'start'], {
      cwd: b,
      input: new WireWriter().bytes(1, 'containerd.runc.v1.Options').finish(),
    });

  test('start prints only the address and writes it to <bundle>/address; a second start finds the same shim', async () => {
    const a = bundle('a');
    const first = await start('a', a);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stderr, '');
    assert.equal(first.stdout.toString(), `unix://${socket}`);
    assert.equal(readFileSync(join(a, 'address'), 'utf8'), `unix://${socket}`);

    const client = new TtrpcClient(first.stdout.toString());
    const task = ttrpcService(client, shimProtoRoot(), TASK_SERVICE);
    try {
      const { shimPid } = await task.unary<{ shimPid: number }>('Connect', { id: 'a' });
      shimPids.add(shimPid);
      const second = await start('b', bundle('b'));
      assert.equal(second.stdout.toString(), `unix://${socket}`);
      assert.equal((await task.unary<{ shimPid: number }>('Connect', { id: 'b' })).shimPid, shimPid);
      // Reserved for a and b, which were never created: Shutdown keeps the shim for them…
      await task.unary('Shutdown', { id: 'a' });
      await sleep(200);
      assert.ok(existsSync(socket));
    } finally {
      client.close();
    }
  });

  test('with nothing created, the shim exits once its reservations lapse, or at once on Shutdown after them', async () => {
    // Reservations last 30 s; a Create that fails or a Delete ends them sooner. Shut down explicitly:
    // a fresh shim on another group, reserved by its own start.
    const g = bundle('c', { 'io.containerd.runc.v2.group': 'solo' });
    const r = await start('c', g);
    assert.equal(r.code, 0, r.stderr);
    const groupSocket = shimSocketPath({ address, namespace, group: 'solo' });
    assert.equal(r.stdout.toString(), `unix://${groupSocket}`);
    const client = new TtrpcClient(r.stdout.toString());
    const task = ttrpcService(client, shimProtoRoot(), TASK_SERVICE);
    const { shimPid } = await task.unary<{ shimPid: number }>('Connect', { id: 'c' });
    shimPids.add(shimPid);
    // A Create that fails (no such bundle) drops the reservation; Shutdown then ends the shim.
    await assert.rejects(task.unary('Create', { id: 'c', bundle: join(dir, 'missing') }, { namespace }));
    await task.unary('Shutdown', { id: 'c' }, { namespace });
    client.close();
    for (const deadline = Date.now() + 5000; alive(shimPid) && Date.now() < deadline; ) await sleep(50);
    assert.equal(alive(shimPid), false, 'the shim exited');
    assert.equal(existsSync(groupSocket), false, 'and removed its socket');
    assert.equal(existsSync(shimLockPath(groupSocket)), false, 'and its lock file');
  });
});
