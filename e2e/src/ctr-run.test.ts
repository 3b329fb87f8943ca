import { cachedPreset } from '@berth/image-builder';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ctr, startBerthd, type TestDaemon } from './harness.js';

const IMAGE = 'localhost/berth-test/busybox:latest';

async function eventually<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeout = 15_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `ctr run` and `ctr tasks` against berthd with its default runtime (berth's shim) and the stock shim. */
describe('ctr run against berthd', () => {
  let d: TestDaemon;
  const ns = 'e2e-run';

  before(async () => {
    const image = await cachedPreset('small', { ociArchive: true });
    d = await startBerthd();
    const r = await ctr(d, ['-n', ns, 'images', 'import', image.ociArchive as string]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    // End whatever a failed test left running, then the daemon (its shims exit with their last container).
    const tasks = (await ctr(d, ['-n', ns, 'tasks', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
    for (const id of tasks) {
      await ctr(d, ['-n', ns, 'tasks', 'kill', '-s', 'KILL', id]);
      await ctr(d, ['-n', ns, 'tasks', 'rm', '-f', id]);
    }
    for (const id of (await ctr(d, ['-n', ns, 'containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean)) {
      await ctr(d, ['-n', ns, 'containers', 'rm', id]);
    }
    await d?.cleanup();
  });

  test('run --rm prints output, returns exit codes, passes env, reads piped stdin', async () => {
    let r = await ctr(d, ['-n', ns, 'run', '--rm', IMAGE, 'echo1', '/bin/echo', 'hello from berth']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'hello from berth');
    r = await ctr(d, ['-n', ns, 'run', '--rm', IMAGE, 'exit3', '/bin/sh', '-c', 'exit 3']);
    assert.equal(r.code, 3);
    // ctr 1.6 has no --user; the berth CLI's -u is tested with the client.
    r = await ctr(d, ['-n', ns, 'run', '--rm', '--env', 'GREETING=ahoy', IMAGE, 'envuser', '/bin/sh', '-c', 'echo $GREETING $(id -u)']);
    assert.equal(r.stdout.trim(), 'ahoy 0', r.stderr);
    // The shim keeps stdin open until CloseIO (as the stock shim): read what is needed and exit.
    r = await ctr(d, ['-n', ns, 'run', '--rm', IMAGE, 'stdin', '/bin/sh', '-c', 'read a; echo got $a'], { input: 'line\n' });
    assert.equal(r.stdout.trim(), 'got line', r.stderr);
  });

  test('run -d, then tasks ls/ps/exec/pause/resume/metrics/kill/rm and containers ls/rm', async () => {
    let r = await ctr(d, ['-n', ns, 'run', '-d', '--memory-limit', '33554432', IMAGE, 'bg', '/bin/sleep', '300']);
    assert.equal(r.code, 0, r.stderr);
    assert.match((await ctr(d, ['-n', ns, 'tasks', 'ls'])).stdout, /bg\s+\d+\s+RUNNING/);
    assert.match((await ctr(d, ['-n', ns, 'tasks', 'ps', 'bg'])).stdout, /^\d+/m);
    r = await ctr(d, ['-n', ns, 'tasks', 'exec', '--exec-id', 'e1', 'bg', '/bin/echo', 'inside']);
    assert.equal(r.stdout.trim(), 'inside', r.stderr);
    r = await ctr(d, ['-n', ns, 'tasks', 'exec', '--exec-id', 'e1', 'bg', '/bin/true']);
    assert.equal(r.code, 0, 'an exec id is free again once its process is deleted');
    assert.equal((await ctr(d, ['-n', ns, 'tasks', 'pause', 'bg'])).code, 0);
    assert.match((await ctr(d, ['-n', ns, 'tasks', 'ls'])).stdout, /bg\s+\d+\s+PAUSED/);
    assert.equal((await ctr(d, ['-n', ns, 'tasks', 'resume', 'bg'])).code, 0);
    const metrics = await ctr(d, ['-n', ns, 'tasks', 'metrics', 'bg']);
    assert.match(metrics.stdout, /memory\.limit_in_bytes\s+33554432/, metrics.stdout + metrics.stderr);
    r = await ctr(d, ['-n', ns, 'tasks', 'rm', 'bg']);
    assert.notEqual(r.code, 0, 'a running task cannot be deleted');
    // sleep is PID 1 in its namespace and ignores SIGTERM, as under containerd: use SIGKILL.
    assert.equal((await ctr(d, ['-n', ns, 'tasks', 'kill', '-s', 'KILL', 'bg'])).code, 0);
    await eventually('bg stopped', async () => (await ctr(d, ['-n', ns, 'tasks', 'ls'])).stdout, (o) => /bg\s+\d+\s+STOPPED/.test(o));
    r = await ctr(d, ['-n', ns, 'tasks', 'kill', 'bg']);
    assert.match(r.stderr, /process already finished: not found/);
    assert.equal((await ctr(d, ['-n', ns, 'tasks', 'rm', 'bg'])).code, 0);
    assert.match((await ctr(d, ['-n', ns, 'containers', 'ls'])).stdout, /^bg\s/m);
    assert.equal((await ctr(d, ['-n', ns, 'containers', 'rm', 'bg'])).code, 0);
  });

  test('the stock shim by path and berth shim by name run the same image', async () => {
    let r = await ctr(d, ['-n', ns, 'run', '--rm', '--runtime', '/usr/bin/containerd-shim-runc-v2', IMAGE, 'stock', '/bin/echo', 'stock']);
    assert.equal(r.stdout.trim(), 'stock', r.stderr);
    r = await ctr(d, ['-n', ns, 'run', '--rm', '--runtime', 'io.containerd.berth.v1', IMAGE, 'berthrt', '/bin/echo', 'berth']);
    assert.equal(r.stdout.trim(), 'berth', r.stderr);
    r = await ctr(d, ['-n', ns, 'run', '--rm', '--runtime', 'io.containerd.nope.v1', IMAGE, 'nope', '/bin/true']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /containerd-shim-nope-v1/);
  });

  test('berthd killed with SIGKILL and restarted: the task is still RUNNING, can be killed, and its exit is reported', async () => {
    let r = await ctr(d, ['-n', ns, 'run', '-d', IMAGE, 'survivor', '/bin/sh', '-c', 'trap "exit 7" TERM; while :; do sleep 1; done']);
    assert.equal(r.code, 0, r.stderr);
    await d.stop('SIGKILL');
    d = await startBerthd({ dir: d.dir });
    assert.match((await ctr(d, ['-n', ns, 'tasks', 'ls'])).stdout, /survivor\s+\d+\s+RUNNING/);
    assert.equal((await ctr(d, ['-n', ns, 'tasks', 'kill', 'survivor'])).code, 0);
    await eventually(
      'survivor stopped',
      async () => (await ctr(d, ['-n', ns, 'tasks', 'ls'])).stdout,
      (o) => /survivor\s+\d+\s+STOPPED/.test(o),
    );
    r = await ctr(d, ['-n', ns, 'tasks', 'rm', 'survivor']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /exit status 7|^$/);
    assert.equal((await ctr(d, ['-n', ns, 'containers', 'rm', 'survivor'])).code, 0);
  });
});
