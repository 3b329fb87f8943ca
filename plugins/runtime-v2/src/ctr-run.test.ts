import { GrpcConnection } from '@berth/api';
import { type BerthError, NotFoundError, UnknownError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  alive,
  type Berthd,
  cleanupNamespace,
  kill,
  prepareRootfs,
  run,
  STOCK_SHIM,
  shimPids,
  skipReason,
  sleep,
  spawnCollect,
  startBerthd,
  stockShimSocket,
} from './test-harness.js';

/**
 * `ctr` 1.6 against a real berthd running the stock containerd-shim-runc-v2,
 * on `--rootfs` directories (no snapshotter needed). Each run uses its own
 * namespace: the stock shim keeps state under fixed /run/containerd paths.
 */
describe('ctr run against berthd with the stock runc shim', { skip: skipReason() }, () => {
  const namespace = `berthrt${process.pid}`;
  const ids = new Set<string>();
  let dir = '';
  let rootfs = '';
  let config = '';
  let daemon: Berthd | undefined;
  let conn: GrpcConnection | undefined;

  const id = (name: string) => {
    ids.add(name);
    return name;
  };
  const ctr = (args: readonly string[], timeout?: number) =>
    run('ctr', ['--address', (daemon as Berthd).address, '-n', namespace, ...args], timeout);
  const tasks = () => (conn as GrpcConnection).service('containerd.services.tasks.v1.Tasks');
  const getTask = (containerId: string) =>
    tasks().unary<{ process: { pid: number; status: number; exitStatus: number } }>('Get', { containerId }, { namespace });
  const bundles = () => readdirSync(join((daemon as Berthd).state, 'io.containerd.runtime.v2.task', namespace)).sort();
  const STOPPED = 3;
  const RUNNING = 2;

  /** `ctr tasks ls` as {id: [pid, status]}. */
  async function ls(): Promise<Record<string, [number, string]>> {
    const res = await ctr(['tasks', 'ls']);
    assert.equal(res.code, 0, res.stderr);
    return Object.fromEntries(
      res.stdout
        .split('\n')
        .slice(1)
        .filter(Boolean)
        .map((l) => l.trim().split(/\s+/))
        .map(([task, pid, status]) => [task, [Number(pid), status]]),
    );
  }

  async function ok(res: Promise<{ code: number | null; stdout: string; stderr: string }>) {
    const r = await res;
    assert.equal(r.code, 0, r.stderr);
    return r;
  }

  async function until(what: string, check: () => Promise<boolean> | boolean, timeout = 10_000): Promise<void> {
    for (const deadline = Date.now() + timeout; !(await check()); await sleep(50)) {
      if (Date.now() > deadline) throw new Error(`timed out: ${what}\n${daemon?.logs().slice(-4000)}`);
    }
  }

  async function subscribed(collector: ReturnType<typeof spawnCollect>): Promise<boolean> {
    const probeId = id(`t-sub-${Date.now().toString(36)}`);
    await ctr(['containers', 'create', '--rootfs', rootfs, probeId, '/bin/true']);
    await ctr(['containers', 'rm', probeId]);
    await sleep(100);
    return collector.output().includes(`"id":"${probeId}"`);
  }

  async function restart(): Promise<void> {
    conn?.close();
    daemon = await startBerthd(dir, config);
    conn = new GrpcConnection(daemon.address);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-runtime-v2-'));
    rootfs = await prepareRootfs(join(dir, 'rootfs'));
    config = [
      'version = 2',
      '[plugins."io.containerd.runtime.v2.task"]',
      `  allowed_host_paths = ["${rootfs}"]`,
      '  forbidden_capabilities = ["CAP_SYS_ADMIN"]',
      // What `ctr run` asks for by default runs the stock shim, whether or not berth's shim is installed.
      '[plugins."io.containerd.runtime.v2.task".runtimes."io.containerd.runc.v2"]',
      `  binary = "${STOCK_SHIM}"`,
      '',
    ].join('\n');
    await restart();
  });

  after(async () => {
    await cleanupNamespace(namespace, daemon, ids);
    conn?.close();
    await daemon?.stop();
    if (daemon) await cleanupNamespace(namespace, daemon, ids);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('run --rm prints the output and returns the exit code; nothing is left behind', async () => {
    const echo = await ctr(['run', '--rm', '--rootfs', rootfs, id('t-echo'), '/bin/echo', 'hi']);
    assert.deepEqual([echo.code, echo.stdout, echo.stderr], [0, 'hi\n', '']);
    const exit3 = await ctr(['run', '--rm', '--runtime', STOCK_SHIM, '--rootfs', rootfs, id('t-exit'), '/bin/sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.deepEqual([exit3.code, exit3.stdout, exit3.stderr], [3, 'out\n', 'err\n']);
    assert.deepEqual(bundles(), []);
    assert.equal((await ctr(['containers', 'ls', '-q'])).stdout, '');
    await until('the shims exit', () => shimPids(namespace).length === 0);
    assert.equal(existsSync(stockShimSocket((daemon as Berthd).address, namespace, 't-echo')), false);
  });

  test('the task events come once each, from the shim through the ttrpc socket', async () => {
    const ttrpc = `${(daemon as Berthd).address}.ttrpc`;
    assert.equal(statSync(ttrpc).mode & 0o777, 0o600);
    const events = spawnCollect('ctr', ['--address', (daemon as Berthd).address, 'events']);
    try {
      // ctr subscribes a moment after it starts: wait until it sees something.
      await until('ctr events subscribed', () => subscribed(events));
      const res = await ctr(['run', '--rm', '--rootfs', rootfs, id('t-events'), '/bin/true']);
      assert.equal(res.code, 0, res.stderr);
      await events.waitFor(/\/containers\/delete \{"id":"t-events"\}/);
      const topics = events
        .output()
        .split('\n')
        .filter((l) => l.includes('"t-events"'))
        .map((l) => l.split(' ')[5]);
      assert.deepEqual(topics, ['/containers/create', '/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete', '/containers/delete']);
      const exit = events.output().split('\n').find((l) => l.includes('/tasks/exit') && l.includes('"t-events"')) as string;
      assert.match(exit, new RegExp(`UTC ${namespace} /tasks/exit \\{"container_id":"t-events","id":"t-events","pid":\\d+,"exited_at":"`));
    } finally {
      await events.stop();
    }
  });

  test('run -d, then tasks ls / ps / exec / pause / resume / metrics / kill / rm, with containerd codes', async () => {
    const d1 = id('d1');
    const started = await ctr(['run', '-d', '--rootfs', rootfs, d1, '/bin/sh', '-c', 'trap "exit 7" TERM; while :; do sleep 0.1; done']);
    assert.equal(started.code, 0, started.stderr);
    const [pid, status] = (await ls())[d1] ?? [];
    assert.equal(status, 'RUNNING');
    assert.ok(pid && alive(pid));
    assert.deepEqual(bundles(), [d1]);

    const inExec = await ctr(['tasks', 'exec', '--exec-id', 'e0', d1, '/bin/echo', 'from exec']);
    assert.deepEqual([inExec.code, inExec.stdout], [0, 'from exec\n']);
    const longExec = spawnCollect('ctr', ['--address', (daemon as Berthd).address, '-n', namespace, 'tasks', 'exec', '--exec-id', 'e1', d1, '/bin/sleep', '60']);
    await until('exec e1 runs', async () => (await ctr(['tasks', 'ps', d1])).stdout.includes('ExecID:e1'));
    const reused = await ctr(['tasks', 'exec', '--exec-id', 'e1', d1, '/bin/true']);
    assert.equal(reused.code, 1);
    assert.match(reused.stderr, /id e1: already exists/);
    await assert.rejects(
      tasks().unary('Exec', { containerId: d1, execId: 'e1', spec: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{"args":["/bin/true"],"cwd":"/"}') } }, { namespace }),
      (err: BerthError) => err.kind === 'already-exists',
    );

    await ok(ctr(['tasks', 'pause', d1]));
    assert.equal((await ls())[d1]?.[1], 'PAUSED');
    await ok(ctr(['tasks', 'resume', d1]));
    assert.equal((await ls())[d1]?.[1], 'RUNNING');
    const metrics = await ctr(['tasks', 'metrics', d1]);
    assert.equal(metrics.code, 0, metrics.stderr);
    assert.match(metrics.stdout, /memory\.usage_in_bytes\s+\d+/);

    // Deleting a running task: the stock shim's answer, passed on as containerd does (Unknown).
    await assert.rejects(tasks().unary('Delete', { containerId: d1 }, { namespace }), (err: Error) => {
      return err instanceof UnknownError && err.message === 'failed to delete task: cannot delete a running process';
    });

    await ok(ctr(['tasks', 'kill', d1]));
    await until('d1 stops', async () => (await ls())[d1]?.[1] === 'STOPPED');
    assert.equal((await getTask(d1)).process.exitStatus, 7);
    assert.equal(await longExec.exited, 137, 'the exec dies with its container');
    const again = await ctr(['tasks', 'kill', d1]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /process already finished: not found/);
    await assert.rejects(tasks().unary('Kill', { containerId: d1, signal: 9 }, { namespace }), NotFoundError);
    await assert.rejects(tasks().unary('Pause', { containerId: d1 }, { namespace }), /cannot pause a stopped container/);

    const rm = await ctr(['tasks', 'rm', d1]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stderr, /task d1 exit with non-zero exit code 7/);
    await assert.rejects(getTask(d1), (err: Error) => err instanceof NotFoundError && err.message === 'task d1 not found');
    await ok(ctr(['containers', 'rm', d1]));
    assert.deepEqual(bundles(), []);
    assert.equal(alive(pid as number), false);
  });

  test('an unknown runtime fails naming the missing shim binary', async () => {
    const res = await ctr(['run', '--rm', '--runtime', 'io.containerd.nope.v1', '--rootfs', rootfs, id('t-nope'), '/bin/true']);
    assert.equal(res.code, 1);
    assert.match(
      res.stderr,
      /failed to start shim: failed to resolve runtime path: runtime "io\.containerd\.nope\.v1" binary not installed "containerd-shim-nope-v1": file does not exist/,
    );
    const bad = await ctr(['run', '--rm', '--runtime', '/nonexistent/shim', '--rootfs', rootfs, id('t-nope2'), '/bin/true']);
    assert.match(bad.stderr, /invalid custom binary path: stat \/nonexistent\/shim: no such file or directory/);
    assert.deepEqual(bundles(), []);
  });

  test("the config's host policy refuses forbidden capabilities and host paths, with a message", async () => {
    const priv = await ctr(['run', '--rm', '--privileged', '--rootfs', rootfs, id('t-priv'), '/bin/true']);
    assert.equal(priv.code, 1);
    assert.match(priv.stderr, /container "t-priv": capability CAP_SYS_ADMIN \(\w+\) is forbidden by berthd's configuration/);
    const bind = await ctr(['run', '--rm', '--mount', 'type=bind,src=/etc,dst=/host-etc,options=rbind:ro', '--rootfs', rootfs, id('t-bind'), '/bin/true']);
    assert.equal(bind.code, 1);
    assert.match(bind.stderr, /host path \/etc for the bind mount on \/host-etc is not allowed by berthd's configuration/);
    const outside = await ctr(['run', '--rm', '--rootfs', '/', id('t-root'), '/bin/true']);
    assert.match(outside.stderr, /host path \/ for the root is not allowed/);
    const allowed = await ctr(['run', '--rm', '--mount', `type=bind,src=${rootfs}/etc,dst=/x,options=rbind:ro`, '--rootfs', rootfs, id('t-ok'), '/bin/ls', '/x']);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.deepEqual(bundles(), []);
    await ctr(['containers', 'rm', 't-priv', 't-bind', 't-root']);
  });

  test('a shim that dies: the task is STOPPED with the status its delete reports, nothing hangs', async () => {
    const events = spawnCollect('ctr', ['--address', (daemon as Berthd).address, 'events', `namespace==${namespace}`]);
    try {
      await until('ctr events subscribed', () => subscribed(events));
      // An attached `ctr run` returns when its shim dies.
      const argv = ['--address', (daemon as Berthd).address, '-n', namespace, 'run', '--rootfs', rootfs, id('k0'), '/bin/sleep', '600'];
      const attached = spawnCollect('ctr', argv);
      await until('k0 runs', async () => (await ls()).k0?.[1] === 'RUNNING');
      for (const pid of shimPids(namespace, 'k0')) kill(pid);
      assert.equal(await Promise.race([attached.exited, sleep(15_000).then(() => 'hung')]), 137);
      await ctr(['containers', 'rm', 'k0']);

      const k1 = id('k1');
      await ok(ctr(['run', '-d', '--rootfs', rootfs, k1, '/bin/sleep', '600']));
      const [pid] = (await ls())[k1] ?? [];
      const [shim, ...more] = shimPids(namespace, k1);
      assert.ok(shim && more.length === 0);
      // The shim publishes /tasks/start after Start has answered: let it get through before the shim dies.
      await events.waitFor(new RegExp(`/tasks/start \\{"container_id":"${k1}"`));
      kill(shim);
      await until('k1 shows STOPPED', async () => (await ls())[k1]?.[1] === 'STOPPED');
      const state = await getTask(k1);
      assert.deepEqual([state.process.status, state.process.exitStatus], [STOPPED, 137]);
      assert.equal(alive(pid as number), false, "the shim's delete killed the container");
      assert.deepEqual(bundles(), [], 'cleaned up with the shim');
      assert.equal(existsSync(stockShimSocket((daemon as Berthd).address, namespace, k1)), false, 'no stale socket');
      const waited = await tasks().unary<{ exitStatus: number }>('Wait', { containerId: k1 }, { namespace, timeout: 5000 });
      assert.equal(waited.exitStatus, 137);
      assert.match((await ctr(['tasks', 'kill', k1])).stderr, /process already finished: not found/);
      const rm = await ctr(['tasks', 'rm', k1]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stderr, /exit with non-zero exit code 137/);
      await ok(ctr(['containers', 'rm', k1]));

      await events.waitFor(/\/containers\/delete \{"id":"k1"\}/);
      const topics = events
        .output()
        .split('\n')
        .filter((l) => l.includes('"k1"'))
        .map((l) => l.split(' ')[5]);
      assert.deepEqual(topics, ['/containers/create', '/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete', '/containers/delete']);
    } finally {
      await events.stop();
    }
  });

  test('berthd killed with SIGKILL while a task runs: after a restart the task is RUNNING, kill works, its exit status is reported', async () => {
    const r1 = id('r1');
    await ok(ctr(['run', '-d', '--rootfs', rootfs, r1, '/bin/sh', '-c', 'trap "exit 7" TERM; while :; do sleep 0.1; done']));
    const [pid] = (await ls())[r1] ?? [];
    await (daemon as Berthd).stop('SIGKILL');
    await restart();
    assert.deepEqual((await ls())[r1], [pid, 'RUNNING']);
    assert.equal((await getTask(r1)).process.status, RUNNING);
    const waiting = tasks().unary<{ exitStatus: number }>('Wait', { containerId: r1 }, { namespace, timeout: 20_000 });
    await ok(ctr(['tasks', 'kill', r1]));
    assert.equal((await waiting).exitStatus, 7);
    const rm = await ctr(['tasks', 'rm', r1]);
    assert.match(rm.stderr, /exit with non-zero exit code 7/);
    await ok(ctr(['containers', 'rm', r1]));
    assert.deepEqual(bundles(), []);
  });

  test('a shim that died while berthd was down is cleaned up at the restart with the status its delete reports', async () => {
    const r2 = id('r2');
    await ok(ctr(['run', '-d', '--rootfs', rootfs, r2, '/bin/sleep', '600']));
    const [pid] = (await ls())[r2] ?? [];
    await (daemon as Berthd).stop('SIGKILL');
    for (const shim of shimPids(namespace, r2)) kill(shim);
    await sleep(200);
    await restart();
    assert.deepEqual((await ls())[r2], [pid, 'STOPPED']);
    assert.equal((await getTask(r2)).process.exitStatus, 137);
    assert.equal(alive(pid as number), false);
    assert.deepEqual(bundles(), []);
    const rm = await ctr(['tasks', 'rm', r2]);
    assert.equal(rm.code, 0, rm.stderr);
    await ok(ctr(['containers', 'rm', r2]));
    assert.deepEqual(await ls(), {});
  });
});
