import { encodeMessage, protoRoot } from '@berth/api';
import {
  AlreadyExistsError,
  type EventExchange,
  type EventPayload,
  FailedPreconditionError,
  NotFoundError,
  UnknownError,
} from '@berth/plugin-api';
import { TtrpcServer } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { shimSocketPath } from '@berth/shim';
import { RuntimeResolver } from './runtime-resolver.js';
import { ShimTaskManager } from './shim-task-manager.js';

/**
 * The task manager against an in-process fake shim (a ttrpc Task server)
 * and fake shim binaries (shell scripts for `start` and `delete`): the
 * protocol and the bookkeeping without root, runc or the stock shim.
 */

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
const ns = { namespace: 'ns1' };
const noIO = { stdin: '', stdout: '/fifo/out', stderr: '', terminal: false };
const spec = { ociVersion: '1.0.2', process: { args: ['/bin/true'] }, root: { path: 'rootfs' } };

interface FakeContainer {
  pid: number;
  status: number; // containerd.v1.types.Status
  exitStatus: number;
  exitedAt?: { seconds: number; nanos: number };
  waiters: Array<() => void>;
}

/** A shim's Task service, in memory. */
class FakeShim {
  readonly containers = new Map<string, FakeContainer>();
  readonly calls: string[] = [];
  readonly server = new TtrpcServer({ log: silent });
  private nextPid = 1000;

  constructor(readonly socket: string) {
    const gone = (id: string) => new NotFoundError(`container ${id}: not found`);
    const get = (id: string) => {
      const c = this.containers.get(id);
      if (!c) throw gone(id);
      return c;
    };
    const record = (name: string) => (r: { id: string }) => {
      this.calls.push(`${name} ${r.id}`);
      return {};
    };
    this.server.register(protoRoot(), 'containerd.task.v2.Task', {
      connect: async (r: { id: string }) => {
        this.calls.push(`Connect ${r.id}`);
        return { shimPid: process.pid, taskPid: this.containers.get(r.id)?.pid ?? 0 };
      },
      create: async (r: { id: string; bundle: string; stdout: string; options: { type_url: string } | null }) => {
        this.calls.push(`Create ${r.id} ${r.bundle.endsWith(`/ns1/${r.id}`)} ${r.stdout} ${r.options?.type_url ?? ''}`);
        if (r.id === 'refused') throw new UnknownError('OCI runtime create failed: exec: "nope": not found');
        const pid = this.nextPid++;
        this.containers.set(r.id, { pid, status: 1, exitStatus: 0, waiters: [] });
        return { pid };
      },
      start: async (r: { id: string; execId: string }) => {
        const c = get(r.id);
        c.status = 2;
        return { pid: c.pid };
      },
      state: async (r: { id: string; execId: string }) => {
        if (r.execId) throw new NotFoundError(`process does not exist ${r.execId}: not found`);
        const c = get(r.id);
        return { id: r.id, pid: c.pid, status: c.status, stdout: '/fifo/out', exitStatus: c.exitStatus, exitedAt: c.exitedAt ?? null };
      },
      kill: async (r: { id: string; signal: number }) => {
        const c = get(r.id);
        if (c.status === 3) throw new NotFoundError('process already finished: not found');
        c.status = 3;
        c.exitStatus = 128 + r.signal;
        c.exitedAt = { seconds: 1_700_000_000, nanos: 0 };
        for (const w of c.waiters.splice(0)) w();
        return {};
      },
      wait: async (r: { id: string }) => {
        const c = get(r.id);
        if (c.status !== 3) await new Promise<void>((resolve) => c.waiters.push(resolve));
        return { exitStatus: c.exitStatus, exitedAt: c.exitedAt };
      },
      delete: async (r: { id: string; execId: string }) => {
        const c = get(r.id);
        if (c.status === 2) throw new UnknownError('cannot delete a running process');
        this.containers.delete(r.id);
        this.calls.push(`Delete ${r.id}`);
        return { pid: c.pid, exitStatus: c.exitStatus, exitedAt: c.exitedAt };
      },
      shutdown: record('Shutdown'),
      stats: async (r: { id: string }) => {
        get(r.id);
        return { stats: { type_url: 'io.containerd.cgroups.v1.Metrics', value: Buffer.from([1, 2]) } };
      },
      pids: async (r: { id: string }) => ({ processes: [{ pid: get(r.id).pid, info: null }] }),
      pause: record('Pause'),
      resume: record('Resume'),
      checkpoint: record('Checkpoint'),
      exec: async (r: { id: string; execId: string; spec: { type_url: string } }) => {
        this.calls.push(`Exec ${r.id} ${r.execId} ${r.spec?.type_url}`);
        return {};
      },
      resizePty: record('ResizePty'),
      closeIO: record('CloseIO'),
      update: record('Update'),
    });
  }

  listen(): Promise<void> {
    mkdirSync(join(this.socket, '..'), { recursive: true });
    return this.server.listen(this.socket);
  }

  /** The shim process dies: every connection drops. */
  die(): Promise<void> {
    return this.server.close();
  }
}

class RecordingExchange implements EventExchange {
  readonly published: Array<{ namespace: string; topic: string; data: Record<string, unknown> }> = [];
  async publish(namespace: string, topic: string, event: EventPayload) {
    this.published.push({ namespace, topic, data: { ...event.data } });
  }
  async forward() {}
  subscribe(): AsyncIterable<never> {
    throw new Error('not used');
  }
}

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-manager-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('ShimTaskManager', () => {
  let n = 0;
  let run = '';
  let shim: FakeShim;
  let events: RecordingExchange;
  let managers: ShimTaskManager[];
  let bins = '';

  /** A fake shim binary: `start` prints the fake shim's address (and writes it as shims do), `delete` prints a DeleteResponse. */
  function binary(name: string, socket: string): string {
    const path = join(bins, name);
    writeFileSync(
      path,
      `#!/bin/sh
for last; do :; done
echo "$last $*" >> "${run}/calls"
case "$last" in
  start) cat > /dev/null; printf 'unix://${socket}' > address; printf 'unix://${socket}' ;;
  delete) cat "${run}/delete-response" ;;
esac
`,
    );
    chmodSync(path, 0o755);
    return path;
  }

  const binaryCalls = () => (existsSync(join(run, 'calls')) ? readFileSync(join(run, 'calls'), 'utf8').trim().split('\n') : []);

  function manager(): ShimTaskManager {
    const m = new ShimTaskManager({
      stateRoot: join(run, 'state'),
      workRoot: join(run, 'root'),
      grpcAddress: join(run, 'berthd.sock'),
      ttrpcAddress: join(run, 'berthd.sock.ttrpc'),
      publishBinary: '/bin/true',
      resolver: new RuntimeResolver({ path: () => [bins] }),
      events,
      log: silent,
      timeouts: { cleanup: 5000 },
      berthShimSocketDir: join(run, 's'),
    });
    managers.push(m);
    return m;
  }

  const create = (m: ShimTaskManager, id: string, runtime = 'io.containerd.fake.v1', extra: object = {}) =>
    m.create(ns, id, { spec, rootfs: [], io: noIO, runtime, ...extra });

  beforeEach(async () => {
    run = join(dir, `run${++n}`);
    bins = join(run, 'bin');
    mkdirSync(bins, { recursive: true });
    events = new RecordingExchange();
    managers = [];
    shim = new FakeShim(join(run, 'fake.sock'));
    await shim.listen();
    binary('containerd-shim-fake-v1', shim.socket);
    writeFileSync(
      join(run, 'delete-response'),
      encodeMessage(protoRoot().lookupType('containerd.task.v2.DeleteResponse'), {
        pid: 1000,
        exitStatus: 137,
        exitedAt: { seconds: 1_700_000_100, nanos: 0 },
      }),
    );
  });

  afterEach(async () => {
    for (const m of managers) await m.close();
    await shim.die();
  });

  test('create starts the shim, connects, creates; the task answers through it; delete shuts it down and removes the bundle', async () => {
    const m = manager();
    const options = { typeUrl: 'containerd.runc.v1.Options', value: new Uint8Array() };
    const task = await create(m, 'c1', 'io.containerd.fake.v1', { runtimeOptions: options });
    assert.equal(task.pid, 1000);
    assert.equal(task.bundle, join(run, 'state', 'ns1', 'c1'));
    assert.equal(readFileSync(join(task.bundle, 'address'), 'utf8'), `unix://${shim.socket}`);
    assert.deepEqual(binaryCalls(), [`start -namespace ns1 -address ${join(run, 'berthd.sock')} -publish-binary /bin/true -id c1 start`]);
    assert.deepEqual(shim.calls, ['Create c1 true /fifo/out containerd.runc.v1.Options'], 'Create straight after start, as containerd does');
    await assert.rejects(create(m, 'c1'), (err: Error) => err instanceof AlreadyExistsError && err.message === 'task c1: already exists');
    assert.equal(m.get(ns, 'c1'), task);
    assert.deepEqual(m.tasks(ns), [task]);
    assert.deepEqual(m.tasks({ namespace: 'other' }), []);

    assert.equal(await task.start(ns), 1000);
    assert.equal((await task.state(ns)).status, 'running');
    assert.equal((await task.state(ns)).exitedAt, undefined);
    assert.deepEqual(await task.pids(ns), [{ pid: 1000 }]);
    assert.equal((await task.stats(ns))?.typeUrl, 'io.containerd.cgroups.v1.Metrics');
    await task.exec(ns, 'e1', { spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: new Uint8Array() }, io: noIO });
    await assert.rejects(task.state(ns, 'e9'), /process does not exist e9: not found/);
    await assert.rejects(m.delete(ns, 'c1'), (err: Error) => err instanceof UnknownError && err.message === 'failed to delete task: cannot delete a running process');

    const waiting = task.wait(ns);
    await task.kill(ns, 9);
    assert.deepEqual(await waiting, { pid: 0, exitStatus: 137, exitedAt: new Date(1_700_000_000_000) });
    await assert.rejects(task.kill(ns, 9), (err: Error) => err instanceof NotFoundError && /process already finished/.test(err.message));
    assert.deepEqual(await m.delete(ns, 'c1'), { pid: 1000, exitStatus: 137, exitedAt: new Date(1_700_000_000_000) });
    assert.equal(m.get(ns, 'c1'), undefined);
    assert.ok(shim.calls.includes('Shutdown c1'));
    assert.deepEqual(readdirSync(join(run, 'state', 'ns1')), []);
    assert.equal(existsSync(join(run, 'root', 'ns1', 'c1')), false);
    await assert.rejects(m.delete(ns, 'c1'), (err: Error) => err instanceof NotFoundError && err.message === 'task c1 not found');
    assert.deepEqual(events.published, [], 'a live shim publishes its own events');
  });

  test('a failed create is undone: Delete and Shutdown in the shim, the bundle removed, the error wrapped', async () => {
    const m = manager();
    await assert.rejects(create(m, 'refused'), (err: Error) => {
      return err instanceof UnknownError && err.message === 'failed to create shim task: OCI runtime create failed: exec: "nope": not found';
    });
    assert.ok(shim.calls.includes('Shutdown refused'));
    assert.equal(m.get(ns, 'refused'), undefined);
    assert.deepEqual(readdirSync(join(run, 'state', 'ns1')), []);
    await assert.rejects(create(m, 'x', 'io.containerd.nope.v1'), (err: Error) => {
      return err instanceof UnknownError && /^failed to start shim: failed to resolve runtime path: runtime "io\.containerd\.nope\.v1" binary not installed "containerd-shim-nope-v1"/.test(err.message);
    });
    assert.equal(existsSync(join(run, 'state', 'ns1', 'x')), false, 'no bundle for a runtime that does not resolve');
  });

  test('a shim that dies: its `delete` runs, /tasks/exit and /tasks/delete are published once, the task stays STOPPED until deleted', async () => {
    const m = manager();
    const task = await create(m, 'c1');
    await task.start(ns);
    const waiting = task.wait(ns);
    await shim.die();
    assert.deepEqual(await waiting, { pid: 1000, exitStatus: 137, exitedAt: new Date(1_700_000_100_000) });
    const state = await task.state(ns);
    assert.deepEqual([state.status, state.exitStatus, state.pid, state.stdout], ['stopped', 137, 1000, '/fifo/out']);
    assert.ok(binaryCalls().some((c) => c.startsWith(`delete -namespace ns1 -address ${join(run, 'berthd.sock')} -publish-binary /bin/true -id c1 -bundle ${task.bundle} delete`)));
    const exitedAt = { seconds: 1_700_000_100, nanos: 0 };
    assert.deepEqual(events.published, [
      { namespace: 'ns1', topic: '/tasks/exit', data: { containerId: 'c1', id: 'c1', pid: 1000, exitStatus: 137, exitedAt } },
      { namespace: 'ns1', topic: '/tasks/delete', data: { containerId: 'c1', pid: 1000, exitStatus: 137, exitedAt } },
    ]);
    assert.equal(existsSync(task.bundle), false);
    assert.deepEqual(await task.wait(ns), { pid: 1000, exitStatus: 137, exitedAt: new Date(1_700_000_100_000) });
    await assert.rejects(task.kill(ns, 9), /process already finished: not found/);
    await assert.rejects(task.start(ns), FailedPreconditionError);
    await assert.rejects(task.stats(ns), NotFoundError);
    assert.deepEqual(await task.pids(ns), []);
    assert.equal((await m.delete(ns, 'c1')).exitStatus, 137);
    assert.equal(m.get(ns, 'c1'), undefined);
    assert.equal(events.published.length, 2, 'nothing more on delete');
  });

  test('after a restart: live shims are reconnected, dead ones cleaned up with the status their delete reports', async () => {
    const first = manager();
    await (await create(first, 'live')).start(ns);
    await (await create(first, 'dead')).start(ns);
    // berthd goes away without a word (its connections just drop); then one shim dies.
    await first.close();
    const dying = shim.containers.get('dead');
    shim.containers.delete('dead'); // this shim no longer knows it, as after a crash
    assert.ok(dying);

    const second = manager();
    await second.load();
    const live = second.get(ns, 'live');
    assert.ok(live);
    assert.equal(live.pid, 1000);
    assert.equal((await live.state(ns)).status, 'running');
    assert.equal((await live.state(ns)).stdout, '/fifo/out');
    const dead = second.get(ns, 'dead');
    assert.ok(dead);
    const state = await dead.state(ns);
    assert.deepEqual([state.status, state.exitStatus], ['stopped', 137]);
    assert.deepEqual(events.published.map((e) => `${e.topic} ${e.data.containerId}`), ['/tasks/exit dead', '/tasks/delete dead']);
    assert.deepEqual(readdirSync(join(run, 'state', 'ns1')), ['live']);
    await live.kill(ns, 15);
    assert.equal((await second.delete(ns, 'live')).exitStatus, 143);
    assert.equal((await second.delete(ns, 'dead')).exitStatus, 137);
  });

  test("berth's shim: when the group's shim answers on its socket, berthd talks to it without exec'ing start", async () => {
    const grpcAddress = join(run, 'berthd.sock');
    const group = new FakeShim(shimSocketPath({ address: grpcAddress, namespace: 'ns1', group: '' }, join(run, 's')));
    await group.listen();
    try {
      const berth = binary('containerd-shim-berth-v1', '/nonexistent');
      const m = manager();
      const a = await create(m, 'a', berth);
      const b = await create(m, 'b', berth);
      assert.deepEqual(binaryCalls(), [], 'start never ran');
      assert.deepEqual(group.calls, ['Connect a', 'Create a true /fifo/out ', 'Connect b', 'Create b true /fifo/out ']);
      assert.equal(readFileSync(join(a.bundle, 'address'), 'utf8'), `unix://${group.socket}`);
      // Another group (an annotation), with no shim yet: start runs.
      const other = { ...spec, annotations: { 'io.containerd.runc.v2.group': 'g2' } };
      await assert.rejects(m.create(ns, 'c', { spec: other, rootfs: [], io: noIO, runtime: berth }), /failed to start shim|connect/);
      assert.equal(binaryCalls().length, 2, 'start, then delete after it failed to connect');
      // Deleting one task of a shared shim keeps the connection for the other.
      await a.kill(ns, 9);
      await m.delete(ns, 'a');
      assert.equal((await b.state(ns)).status, 'created');
    } finally {
      await group.die();
    }
  });
});
