import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { shimSocketPath } from '@berth/shim';
import { alive, type Berthd, cleanupNamespace, kill, pidsWith, prepareRootfs, run, shimPids, skipReason, sleep, startBerthd } from './test-harness.js';

const BERTH_SHIM_MAIN = fileURLToPath(new URL('../../shim/dist/main.js', import.meta.url));

function skip(): string | false {
  const reason = skipReason();
  if (reason) return reason;
  return existsSync(BERTH_SHIM_MAIN) ? false : "berth's shim (plugins/shim) is not built";
}

/**
 * `ctr run` with no --runtime asks for io.containerd.runc.v2, which runs
 * berth's shim when it is installed. One shim process serves the
 * namespace's containers, and berthd talks to it directly once it runs.
 */
describe("ctr run against berthd with berth's own shim (the default for io.containerd.runc.v2)", { skip: skip() }, () => {
  const namespace = `berthbs${process.pid}`;
  const ids = new Set<string>();
  let dir = '';
  let rootfs = '';
  let daemon: Berthd | undefined;

  const ctr = (args: readonly string[]) => run('ctr', ['--address', (daemon as Berthd).address, '-n', namespace, ...args]);
  const id = (name: string) => {
    ids.add(name);
    return name;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-runtime-v2-bs-'));
    rootfs = await prepareRootfs(join(dir, 'rootfs'));
    daemon = await startBerthd(dir, 'version = 2\n');
  });

  after(async () => {
    await cleanupNamespace(namespace, daemon, ids);
    await daemon?.stop();
    if (daemon) await cleanupNamespace(namespace, daemon, ids);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** berthd's spare shim: its own child, waiting with `-spare` (until a group takes it, which rewrites its command line). */
  const spares = () => pidsWith('-address', (daemon as Berthd).address, '-spare');
  async function until(what: string, ok: () => boolean): Promise<void> {
    for (const deadline = Date.now() + 15_000; !ok(); await sleep(50)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}\n${daemon?.logs().slice(-3000)}`);
    }
  }
  const parentOf = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  };

  test("a namespace's first container runs in berthd's spare shim; no new spare while that shim lives", async () => {
    await until('berthd keeps a spare shim', () => spares().length === 1);
    const [spare] = spares() as [number];
    assert.equal(parentOf(spare), (daemon as Berthd).process.pid, "the spare is berthd's child");
    const echo = await ctr(['run', '--rm', '--rootfs', rootfs, id('bs-first'), '/bin/echo', 'first']);
    assert.deepEqual([echo.code, echo.stdout], [0, 'first\n'], echo.stderr);
    assert.deepEqual(shimPids(namespace), [spare], 'the spare became the namespace\'s shim, and shows its namespace');
    assert.deepEqual(spares(), []);
  });

  test('one shim serves the containers of a namespace; berthd reuses it without start', async () => {
    const echo = await ctr(['run', '--rm', '--rootfs', rootfs, id('bs-echo'), '/bin/echo', 'hi']);
    assert.deepEqual([echo.code, echo.stdout], [0, 'hi\n'], echo.stderr);
    for (const name of ['bs-1', 'bs-2']) {
      const res = await ctr(['run', '-d', '--rootfs', rootfs, id(name), '/bin/sleep', '600']);
      assert.equal(res.code, 0, res.stderr);
    }
    // The shim of bs-echo stays a while after its container (shim_idle_ms), so one process serves all three.
    const shims = new Set(shimPids(namespace));
    assert.equal(shims.size, 1, 'one shim process');
    // berthd ran start's code itself for the shim it ships: `serve` is its child, with no `start` process between.
    const [shim] = shims;
    const stat = readFileSync(`/proc/${shim}/stat`, 'utf8');
    assert.equal(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]), (daemon as Berthd).process.pid, 'the shim is berthd\'s child');
    const socket = shimSocketPath({ address: (daemon as Berthd).address, namespace, group: '' });
    // berthd's log reaches us through a pipe: give the line a moment to arrive.
    const reused = new RegExp(`"msg":"using the running group shim"[^\\n]*"id":"bs-2","address":"unix://${socket}"`);
    for (let i = 0; i < 100 && !reused.test((daemon as Berthd).logs()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match((daemon as Berthd).logs(), reused);
    const ls = await ctr(['tasks', 'ls']);
    assert.match(ls.stdout, /bs-1\s+\d+\s+RUNNING/);
    assert.match(ls.stdout, /bs-2\s+\d+\s+RUNNING/);
    for (const name of ['bs-1', 'bs-2']) {
      assert.equal((await ctr(['tasks', 'kill', '-s', 'KILL', name])).code, 0);
    }
    for (const name of ['bs-1', 'bs-2']) {
      for (let i = 0; i < 100 && !/STOPPED/.test((await ctr(['tasks', 'ls'])).stdout.split('\n').find((l) => l.startsWith(name)) ?? ''); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const rm = await ctr(['tasks', 'rm', name]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(rm.stderr, /exit with non-zero exit code 137/);
      assert.equal((await ctr(['containers', 'rm', name])).code, 0);
    }
  });

  test('a spare comes back once no shim lives, and goes when berthd stops', async () => {
    const [shim] = shimPids(namespace);
    assert.ok(shim, 'the namespace shim lingers after its containers');
    kill(shim as number, 'SIGTERM');
    await until('a new spare', () => spares().length === 1);
    const [spare] = spares() as [number];
    await (daemon as Berthd).stop();
    await until('the spare is gone with berthd', () => !alive(spare));
  });
});
