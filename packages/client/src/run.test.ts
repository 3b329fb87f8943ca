import { AlreadyExistsError, errorKindOf, FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { BerthClient } from './berth-client.js';
import { containerSpec } from './containers-client.js';
import { attachProcess, createContainer, deleteContainer, deleteTask, execProcess, STOP_SIGNAL_LABEL, startTask } from './run.js';
import { chainId } from './spec/image-config.js';
import { engineAvailability, type EngineName, startEngine, type TestEngine } from './test-engines.js';

/*
 * Containers and tasks against a real engine: containerd 1.6 (the
 * reference) and berthd once it serves tasks (skipped with the reason until
 * then). BERTH_TEST_BERTHD_ADDRESS=<socket> runs the berthd suite against a
 * berthd that is already running; BERTH_TEST_ENGINES=containerd|berthd picks one.
 * The image is the image builder's `small` preset, imported (and unpacked)
 * with `ctr images import`, as a user would.
 */

const run = promisify(execFile);
const NS = `berth-run-test-${process.pid}`;
const SERVICES = ['containers', 'tasks', 'snapshots', 'content', 'images', 'leases', 'diff'];
const external = process.env.BERTH_TEST_BERTHD_ADDRESS;

interface SmallImage {
  readonly name: string;
  readonly archive: string;
}

/** The image builder is a tool of this repository, not a dependency of the client: loaded only here. */
async function smallImage(): Promise<SmallImage | string> {
  const builder = '@berth/image-builder';
  try {
    const { cachedPreset } = (await import(builder)) as {
      cachedPreset(name: string, opts: { ociArchive: boolean }): Promise<{ name: string; ociArchive?: string }>;
    };
    const img = await cachedPreset('small', { ociArchive: true });
    return { name: img.name, archive: img.ociArchive ?? '' };
  } catch (err) {
    return `no test image: ${(err as Error).message}`;
  }
}

async function availability(): Promise<{ name: EngineName; skip?: string }[]> {
  const base = await engineAvailability(SERVICES);
  const ctr = spawnSync('ctr', ['--version']);
  const noCtr = ctr.error ? 'ctr is not installed' : undefined;
  const notRoot = process.getuid?.() !== 0 ? 'running containers needs root' : undefined;
  return base.map((e) => {
    const skip = e.name === 'berthd' && external ? undefined : e.skip;
    return { name: e.name, ...((skip ?? noCtr ?? notRoot) ? { skip: skip ?? noCtr ?? notRoot } : {}) };
  });
}

const image = await smallImage();
const engines = typeof image === 'string' ? [] : await availability();
if (typeof image === 'string') describe('containers and tasks', { skip: image }, () => {});

const text = () => {
  const s = new PassThrough();
  let t = '';
  s.on('data', (d: Buffer) => {
    t += d.toString();
  });
  return Object.assign(s, { text: () => t });
};

/** Stop and remove whatever a failed test left in the namespace. */
async function cleanNamespace(client: BerthClient): Promise<void> {
  for (const t of await client.tasks.list().catch(() => [])) {
    await client.tasks.kill(t.id, 'SIGKILL', { all: true }).catch(() => {});
    if (t.status === 'paused') await client.tasks.resume(t.id).catch(() => {});
    for (let i = 0; i < 50; i++) {
      const s = await client.tasks.get(t.id).catch(() => undefined);
      if (!s || s.status === 'stopped') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await deleteTask(client, t.id).catch(() => {});
  }
  for (const c of await client.containers.list().catch(() => [])) await deleteContainer(client, c.id).catch(() => {});
}

/** runc leaves the namespace's cgroup folder behind (containerd does too): remove the empty ones. */
function removeCgroups(namespace: string): void {
  const base = '/sys/fs/cgroup';
  if (!existsSync(base)) return;
  for (const controller of readdirSync(base)) {
    try {
      rmdirSync(`${base}/${controller}/${namespace}`);
    } catch {
      // absent, or not empty
    }
  }
}

for (const { name, skip } of engines) {
  const img = image as SmallImage;
  describe(`containers and tasks on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;
    const ctr = (...args: string[]) => run('ctr', ['-a', engine.address, '-n', NS, ...args]);

    /** Whatever a failed test left of these containers goes, so the next tests start clean. */
    async function remove(...ids: string[]): Promise<void> {
      for (const id of ids) {
        await client.tasks.resume(id).catch(() => {});
        await deleteTask(client, id, { force: true }).catch(() => {});
        await deleteContainer(client, id).catch(() => {});
      }
    }

    before(async () => {
      engine = name === 'berthd' && external ? { name, address: external, close: async () => {} } : await startEngine(name);
      client = new BerthClient({ address: engine.address, namespace: NS });
      await ctr('images', 'import', img.archive);
    });
    after(async () => {
      if (client) await cleanNamespace(client);
      if (engine) await ctr('images', 'rm', '--sync', img.name).catch(() => {});
      client?.close();
      await engine?.close();
      removeCgroups(NS);
    });

    it('runs --rm, copies its output and reports its exit status', async () => {
      const out = text();
      const err = text();
      const r = await client.run({
        image: img.name,
        id: 'rm1',
        rm: true,
        args: ['sh', '-c', 'echo out; echo err >&2; exit 3'],
        streams: { stdout: out, stderr: err },
      });
      assert.equal(r.exitStatus, 3);
      assert.equal(out.text(), 'out\n');
      assert.equal(err.text(), 'err\n');
      assert.ok(r.exitedAt && Math.abs(r.exitedAt.getTime() - Date.now()) < 60_000);
      // Task, container and snapshot are gone.
      await assert.rejects(client.tasks.get('rm1'), NotFoundError);
      await assert.rejects(client.containers.get('rm1'), NotFoundError);
      const snapshots = await ctr('snapshots', 'ls');
      assert.doesNotMatch(snapshots.stdout, /^rm1\s/m);
    });

    it('pipes stdin to the container', async () => {
      const out = text();
      const r = await client.run({
        image: img.name,
        id: 'stdin1',
        rm: true,
        stdin: true,
        args: ['sh', '-c', 'cat; echo end'],
        streams: { stdin: Readable.from(['line 1\n', 'line 2\n']), stdout: out },
      });
      assert.equal(r.exitStatus, 0);
      assert.equal(out.text(), 'line 1\nline 2\nend\n');
    });

    it('sets the environment and the user, names resolved in the image', async () => {
      const out = text();
      await client.run({ image: img.name, id: 'env1', rm: true, env: ['A=1', 'B=two words'], user: 'nobody', args: ['sh', '-c', 'echo "$A|$B"; id -u; id -g; id -G'], streams: { stdout: out } });
      assert.equal(out.text(), '1|two words\n65534\n65534\n65534\n');
      const out2 = text();
      await client.run({ image: img.name, id: 'env2', rm: true, user: '1234:5', args: ['sh', '-c', 'id -u; id -g; echo $PATH'], streams: { stdout: out2 } });
      assert.equal(out2.text(), '1234\n5\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
    });

    it('writes the spec, labels and snapshot ctr writes', async (t) => {
      t.after(() => remove('byctr', 'byberth', 'runbyctr', 'runbyberth'));
      const flags = ['--env', 'A=1', '--label', 'k=v', '--mount', 'type=bind,src=/tmp,dst=/host,options=rbind:ro', '--memory-limit', '30000000'];
      await ctr('containers', 'create', ...flags, '--net-host', '--tty', '--cwd', '/tmp', '--read-only', img.name, 'byctr', 'echo', 'hi');
      await createContainer(client, {
        image: img.name,
        id: 'byberth',
        env: ['A=1'],
        labels: { k: 'v' },
        mounts: ['type=bind,src=/tmp,dst=/host,options=rbind:ro'],
        memoryLimit: 30_000_000,
        netHost: true,
        tty: true,
        cwd: '/tmp',
        readonlyRootfs: true,
        args: ['echo', 'hi'],
      });
      const theirs = await client.containers.get('byctr');
      const ours = await client.containers.get('byberth');
      const spec = (c: typeof ours) => {
        const s = containerSpec(c);
        return { ...s, linux: { ...s.linux, cgroupsPath: s.linux?.cgroupsPath?.replace(/[^/]+$/, 'ID') } };
      };
      assert.deepEqual(spec(ours), spec(theirs));
      assert.deepEqual(ours.labels, theirs.labels);
      assert.equal(ours.labels[STOP_SIGNAL_LABEL], 'SIGTERM');
      assert.deepEqual(ours.runtime, theirs.runtime);
      assert.equal(ours.image, theirs.image);
      assert.equal(ours.snapshotter, theirs.snapshotter);
      assert.equal(ours.snapshotKey, 'byberth');
      // The snapshot's parent is the image's chain ID, as computed here.
      const parents = (await ctr('snapshots', 'info', 'byberth')).stdout;
      const parent = JSON.parse(parents).Parent as string;
      assert.equal(parent, JSON.parse((await ctr('snapshots', 'info', 'byctr')).stdout).Parent);
      assert.match(parent, /^sha256:[0-9a-f]{64}$/);

      // ctr run adds the CPU flags (and always cpu shares 1024).
      await ctr('run', '-d', '--cpus', '0.5', img.name, 'runbyctr', 'sleep', '1000');
      await createContainer(client, { image: img.name, id: 'runbyberth', cpus: 0.5, cpuShares: 1024, args: ['sleep', '1000'] });
      assert.deepEqual(spec(await client.containers.get('runbyberth')), spec(await client.containers.get('runbyctr')));
      await deleteTask(client, 'runbyctr', { force: true });
      for (const id of ['byctr', 'byberth', 'runbyctr', 'runbyberth']) await deleteContainer(client, id);
      assert.deepEqual(await client.containers.list(['id~=by']), []);
    });

    it('runs detached: list, exec, pids, pause, resume, metrics, kill, delete', async (t) => {
      t.after(() => remove('d1'));
      const r = await client.run({ image: img.name, id: 'd1', detach: true, memoryLimit: 20_000_000, args: ['sleep', '1000'] });
      assert.equal(r.exitStatus, undefined);
      assert.ok(r.pid > 0);
      let task = (await client.tasks.list()).find((t) => t.id === 'd1');
      assert.equal(task?.status, 'running');
      assert.equal(task?.pid, r.pid);

      const out = text();
      const exec = await execProcess(client, 'd1', 'e1', ['sh', '-c', 'echo from exec; exit 4'], { streams: { stdout: out } });
      const status = await exec.waitInForeground();
      assert.equal(status.exitStatus, 4);
      assert.equal(out.text(), 'from exec\n');
      assert.equal((await exec.delete()).exitStatus, 4);
      await assert.rejects(client.tasks.get('d1', { execId: 'e1' }), NotFoundError);

      const sleeper = await execProcess(client, 'd1', 'e2', ['sleep', '1000'], { detach: true });
      await assert.rejects(execProcess(client, 'd1', 'e2', ['true'], { detach: true }), AlreadyExistsError);
      const pids = await client.tasks.listPids('d1');
      assert.deepEqual(pids.map((p) => p.pid).sort(), [r.pid, sleeper.pid].sort());
      assert.equal(pids.find((p) => p.pid === sleeper.pid)?.execId, 'e2');

      await client.tasks.pause('d1');
      assert.equal((await client.tasks.get('d1')).status, 'paused');
      await assert.rejects(deleteTask(client, 'd1'), FailedPreconditionError);
      await client.tasks.resume('d1');
      assert.equal((await client.tasks.get('d1')).status, 'running');

      const metric = await client.tasks.metric('d1');
      assert.equal(metric.id, 'd1');
      const limit = metric.cgroupV1?.memory?.usage?.limit ?? metric.cgroupV2?.memory?.usageLimit ?? 0;
      // The kernel rounds the limit down to whole pages.
      assert.ok(limit <= 20_000_000 && limit > 20_000_000 - 65_536, `memory limit ${limit}`);
      assert.ok((metric.cgroupV1?.pids?.current ?? metric.cgroupV2?.pids?.current ?? 0) >= 2);

      await client.tasks.update('d1', { memory: { limit: 40_000_000 } });
      const raised = await client.tasks.metric('d1');
      assert.ok((raised.cgroupV1?.memory?.usage?.limit ?? raised.cgroupV2?.memory?.usageLimit ?? 0) > 39_000_000);

      // sleep as PID 1 ignores SIGTERM (no handler): SIGKILL ends it.
      const exit = client.tasks.wait('d1');
      await client.tasks.kill('d1', 'SIGKILL');
      assert.equal((await exit).exitStatus, 137);
      task = (await client.tasks.list()).find((t) => t.id === 'd1');
      assert.equal(task?.status, 'stopped');
      assert.equal(task?.exitStatus, 137);
      const deleted = await deleteTask(client, 'd1');
      assert.equal(deleted.exitStatus, 137);
      await assert.rejects(client.tasks.get('d1'), NotFoundError);
      await deleteContainer(client, 'd1');
    });

    it('attaches to a running task; a client that lets go leaves it running', async (t) => {
      t.after(() => remove('att1'));
      await client.run({ image: img.name, id: 'att1', detach: true, stdin: true, args: ['sh', '-c', 'while read l; do echo "got $l"; done; echo bye'] });
      const input1 = new PassThrough();
      const out1 = text();
      const a1 = await attachProcess(client, 'att1', { streams: { stdin: input1, stdout: out1 } });
      input1.write('one\n');
      for (let i = 0; i < 100 && !out1.text().includes('got one'); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(out1.text(), 'got one\n');
      // Let go without ending its input: the shell reads on.
      a1.detach();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal((await client.tasks.get('att1')).status, 'running');

      const input2 = new PassThrough();
      const out2 = text();
      const a2 = await attachProcess(client, 'att1', { streams: { stdin: input2, stdout: out2 } });
      input2.end('two\n');
      const status = await a2.waitInForeground({ streams: { stdin: input2, stdout: out2 } });
      assert.equal(status.exitStatus, 0);
      assert.equal(out2.text(), 'got two\nbye\n');
      await a2.delete();
      await deleteContainer(client, 'att1');
    });

    it('gives a terminal that follows resizes', async (t) => {
      t.after(() => remove('tty1'));
      await createContainer(client, { image: img.name, id: 'tty1', tty: true, args: ['sh', '-c', 'sleep 0.5; stty size; tty'] });
      const out = text();
      const h = await startTask(client, 'tty1', { streams: { stdout: out } });
      assert.equal(h.terminal, true);
      await h.resize({ width: 123, height: 45 });
      const status = await h.waitInForeground();
      assert.equal(status.exitStatus, 0);
      assert.match(out.text(), /^45 123\r\n\/dev\/pts\/\d+\r\n$/);
      await h.delete();
      await deleteContainer(client, 'tty1');
    });

    it('answers bad requests with the codes containerd uses', async (t) => {
      t.after(() => remove('bad2', 'bad3'));
      await assert.rejects(client.run({ image: 'localhost/none:latest', id: 'bad1', rm: true }), NotFoundError);
      await createContainer(client, { image: img.name, id: 'bad2', args: ['sleep', '1000'] });
      await assert.rejects(createContainer(client, { image: img.name, id: 'bad2' }), AlreadyExistsError);
      await assert.rejects(client.tasks.get('bad2'), NotFoundError);
      await assert.rejects(client.tasks.start('bad2'), NotFoundError);
      const h = await startTask(client, 'bad2', { detach: true });
      await assert.rejects(client.tasks.create('bad2', {}), AlreadyExistsError);
      // The daemon refuses to delete a running task (containerd 1.6 passes on the shim's error, code Unknown);
      // containerd's client refuses before asking, and so does ours.
      await assert.rejects(client.tasks.delete('bad2'), (e: unknown) => errorKindOf(e) === 'unknown' && /cannot delete a running process/.test(String(e)));
      await assert.rejects(deleteTask(client, 'bad2'), FailedPreconditionError);
      await assert.rejects(deleteContainer(client, 'bad2'), FailedPreconditionError);
      const exit = h.wait();
      await h.kill('SIGKILL');
      await exit;
      // Killing a stopped task: containerd says the process is gone.
      await assert.rejects(client.tasks.kill('bad2', 'SIGTERM'), NotFoundError);
      await assert.rejects(client.tasks.kill('bad2', 'SIGNOPE'), InvalidArgumentError);
      await deleteTask(client, 'bad2');
      await deleteContainer(client, 'bad2');

      // An unknown runtime: the task is refused, naming the shim it looked for.
      await createContainer(client, { image: img.name, id: 'bad3', runtime: 'io.containerd.nope.v1' });
      const err = await startTask(client, 'bad3', { detach: true }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err, 'an unknown runtime starts nothing');
      assert.match(String((err as Error).message), /containerd-shim-nope-v1/);
      assert.notEqual(errorKindOf(err), 'unavailable');
      await assert.rejects(client.tasks.get('bad3'), NotFoundError);
      await deleteContainer(client, 'bad3');
    });

    it('computes the chain ID the engine unpacked to', async () => {
      const mounts = (await ctr('snapshots', 'ls')).stdout;
      const cfg = await client.images.get(img.name);
      assert.ok(cfg.target.digest);
      const { resolveImage } = await import('./spec/image-config.js');
      const resolved = await resolveImage(client.content, cfg);
      assert.equal(resolved.chainId, chainId(resolved.diffIds));
      assert.match(mounts, new RegExp(`^${resolved.chainId}\\s`, 'm'));
    });
  });
}
