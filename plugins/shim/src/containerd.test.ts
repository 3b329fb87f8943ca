import { cachedPreset, type CommandResult, runCommand, startContainerd, type TestContainerd } from '@berth/image-builder';
import { AlreadyExistsError, NotFoundError, NotImplementedError, UnknownError } from '@berth/plugin-api';
import { TtrpcClient, ttrpcService } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { SHIM_INFO_SERVICE, shimProtoRoot, TASK_SERVICE } from './shim-proto.js';
import { SNAPSHOT_BLOB } from './snapshot.js';
import { DEFAULT_RUNC_ROOT, shimLockPath, shimSocketPath } from './socket-address.js';
import { alive } from './test-support.js';

/**
 * berth's shim under the real containerd 1.6, driven by the real ctr:
 * containerd resolves `io.containerd.berth.v1` to containerd-shim-berth-v1
 * on PATH (the workspace's node_modules/.bin).
 */

const RUNTIME = ['--runtime', 'io.containerd.berth.v1'];
const NS = 'berth-shim-life';
const NS_GROUP = 'berth-shim-group';
const NS_RUNC = 'berth-shim-runcv2';
const NS_RESTART = 'berth-shim-restart';
const NAMESPACES = [NS, NS_GROUP, NS_RUNC, NS_RESTART];
const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const BIN = fileURLToPath(new URL('../../../node_modules/.bin', import.meta.url));

function onPath(bin: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => d && existsSync(join(d, bin)));
}

function whyNot(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (containerd, runc, mounts)';
  const missing = ['containerd', 'ctr', 'runc', 'script'].filter((b) => !onPath(b));
  if (missing.length > 0) return `not installed: ${missing.join(', ')}`;
  if (!existsSync(join(BIN, 'containerd-shim-berth-v1'))) return 'node_modules/.bin/containerd-shim-berth-v1 missing (npm install)';
  return false;
}

/** `ps`, for this daemon's berth shims: their pid and resident memory. */
function berthShims(address: string, namespace?: string): { pid: number; rssKiB: number }[] {
  const out: { pid: number; rssKiB: number }[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      // serve runs from main.js, or from the start-up snapshot when it is built and current.
      if (!(argv.includes(MAIN) || argv.includes(SNAPSHOT_BLOB)) || argv.at(-2) !== 'serve') continue;
      if (argv[argv.indexOf('-address') + 1] !== address) continue;
      if (namespace !== undefined && argv[argv.indexOf('-namespace') + 1] !== namespace) continue;
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (/State:\s+Z/.test(status)) continue;
      out.push({ pid: Number(p), rssKiB: rss });
    } catch {}
  }
  return out;
}

/** Children of `pid` (any of its threads) that are zombies. */
function zombieChildren(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
      try {
        const stat = readFileSync(`/proc/${child}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') out.push(Number(child));
      } catch {}
    }
  }
  return out;
}

async function eventually<T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  let last: T;
  for (const deadline = Date.now() + ms; ; await sleep(50)) {
    last = await get();
    if (ok(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(last)}`);
  }
}

const ok = (r: CommandResult, what: string) => assert.equal(r.code, 0, `${what}: ${r.stderr}${r.stdout}`);
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

describe('containerd-shim-berth-v1 under containerd 1.6', { skip: whyNot() }, () => {
  let c: TestContainerd;
  let image = '';
  let dir = '';
  const savedPath = process.env.PATH;
  let events: ChildProcess | undefined;
  const eventLines: string[] = [];
  /** containerd started again by the restart test (the harness only knows the first one). */
  let restarted: ChildProcess | undefined;

  const ctr = (ns: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}) =>
    runCommand('ctr', ['-a', c.address, '-n', ns, ...args], { input: opts.input, timeoutMs: opts.timeoutMs ?? 60_000 });
  /** ctr with a terminal, as a person types it: `script` gives it a pty of 24 rows and 80 columns. */
  const ctrOnTty = (ns: string, args: string[]) => {
    const cmd = ['ctr', '-a', c.address, '-n', ns, ...args].map(shellQuote).join(' ');
    return runCommand('script', ['-qec', `stty rows 24 cols 80; ${cmd}`, '/dev/null'], { input: '', timeoutMs: 60_000 });
  };
  const bundleOf = (ns: string, id: string) => join(c.dir, 'state', 'io.containerd.runtime.v2.task', ns, id);
  const shimClient = (ns: string, id: string) => {
    const client = new TtrpcClient(readFileSync(join(bundleOf(ns, id), 'address'), 'utf8'));
    return {
      client,
      task: ttrpcService(client, shimProtoRoot(), TASK_SERVICE),
      info: ttrpcService(client, shimProtoRoot(), SHIM_INFO_SERVICE),
    };
  };
  const eventsFor = (id: string) =>
    eventLines.filter((l) => l.includes(`"container_id":"${id}"`)).map((l) => l.split(' ').slice(4, 6).join(' '));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-shim-test-'));
    // io.containerd.runc.v2 (what ctr sends with --runc-binary) resolves to berth's shim here too.
    mkdirSync(join(dir, 'bin'));
    symlinkSync(MAIN, join(dir, 'bin', 'containerd-shim-runc-v2'));
    // The default `runc` (what the shim runs without BinaryName), recording its command lines.
    const realRunc = (await runCommand('sh', ['-c', 'command -v runc'])).stdout.trim();
    writeFileSync(join(dir, 'bin', 'runc'), `#!/bin/sh\necho "$*" >> ${join(dir, 'runc-default-calls')}\nexec ${realRunc} "$@"\n`, { mode: 0o755 });
    process.env.PATH = `${join(dir, 'bin')}:${BIN}:${savedPath}`;
    const built = await cachedPreset('small', { ociArchive: true });
    image = built.name;
    c = await startContainerd({ namespace: NS });
    for (const ns of NAMESPACES) ok(await ctr(ns, ['images', 'import', built.ociArchive as string]), `import into ${ns}`);
    await subscribe();
  });

  /** `ctr events` in the background, every line kept. */
  async function subscribe(): Promise<void> {
    events?.kill('SIGKILL');
    events = spawn('ctr', ['-a', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let partial = '';
    events.stdout?.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      eventLines.push(...lines);
    });
    await sleep(300); // let ctr subscribe
  }

  after(async () => {
    events?.kill('SIGKILL');
    if (c) {
      for (const ns of NAMESPACES) {
        const tasks = await ctr(ns, ['tasks', 'ls', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
        for (const id of tasks?.stdout.split('\n').filter(Boolean) ?? []) {
          await ctr(ns, ['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 10_000 }).catch(() => {});
          await sleep(100);
          await ctr(ns, ['tasks', 'rm', '-f', id], { timeoutMs: 10_000 }).catch(() => {});
        }
        const containers = await ctr(ns, ['containers', 'ls', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
        for (const id of containers?.stdout.split('\n').filter(Boolean) ?? []) {
          await ctr(ns, ['containers', 'rm', id], { timeoutMs: 10_000 }).catch(() => {});
        }
      }
      const shims = berthShims(c.address);
      for (const s of shims) {
        try {
          process.kill(s.pid, 'SIGTERM');
        } catch {}
      }
      for (const deadline = Date.now() + 5000; shims.some((s) => alive(s.pid)) && Date.now() < deadline; ) await sleep(50);
      for (const s of shims) {
        try {
          if (alive(s.pid)) process.kill(s.pid, 'SIGKILL');
        } catch {}
      }
      // Containers a killed shim left behind, then runc's state roots of our namespaces.
      for (const ns of NAMESPACES) {
        for (const [bin, root] of [
          ['runc', join(DEFAULT_RUNC_ROOT, ns)],
          ['crun', join(DEFAULT_RUNC_ROOT, ns)],
          ['crun', join(dir, 'runc-root', ns)],
        ] as const) {
          if (!existsSync(root)) continue;
          const list = await runCommand(bin, ['--root', root, 'list', '-q'], { timeoutMs: 10_000 }).catch(() => undefined);
          for (const id of list?.stdout.split('\n').filter(Boolean) ?? []) {
            await runCommand(bin, ['--root', root, 'delete', '--force', id], { timeoutMs: 10_000 }).catch(() => {});
          }
          try {
            rmdirSync(root);
          } catch {}
        }
        for (const group of ['', 'g1']) {
          const socket = shimSocketPath({ address: c.address, namespace: ns, group });
          rmSync(socket, { force: true });
          rmSync(shimLockPath(socket), { force: true });
        }
      }
      if (restarted && restarted.exitCode === null && restarted.signalCode === null) {
        const exited = new Promise((resolve) => restarted?.once('exit', resolve));
        restarted.kill('SIGTERM');
        const timer = setTimeout(() => restarted?.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await c.stop(); // stops containerd by pid, unmounts what is left under its folder, removes it
    }
    process.env.PATH = savedPath;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ctr run --rm IMAGE id /bin/echo hi prints hi', async () => {
    const r = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'echo', '/bin/echo', 'hi']);
    ok(r, 'run');
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.stderr, '');
  });

  test('exit codes, stderr apart from stdout, env, and /dev/stdout on a real pipe', async () => {
    const three = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'exit3', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    assert.equal(three.code, 3, three.stderr);
    assert.equal(three.stdout, 'out\n');
    assert.equal(three.stderr, 'err\n');
    // The container's init ignores signals from inside its namespace, so a child takes the SIGKILL.
    const killed = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'sig', 'sh', '-c', 'sh -c "kill -9 \\$\\$"; exit $?']);
    assert.equal(killed.code, 137, killed.stderr);
    const env = await ctr(NS, ['run', '--rm', ...RUNTIME, '--env', 'FOO=bar baz', image, 'env', 'sh', '-c', 'echo "$FOO" > /dev/stdout']);
    ok(env, 'env');
    assert.equal(env.stdout, 'bar baz\n');
  });

  // As the stock shim, berth's shim holds its own writer on the stdin FIFO until CloseIO, so a
  // client closing its end does not end the process's stdin (ctr 1.6 never sends CloseIO for
  // `run`): the process reads what it needs and exits by itself.
  test('stdin piped through: echo … | ctr run --rm … head', async () => {
    const payload = `${'line of input\n'.repeat(5000)}last\n`;
    const r = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'stdin', 'head', '-n', '5001'], { input: payload });
    ok(r, 'head');
    assert.equal(r.stdout.length, payload.length);
    assert.equal(r.stdout, payload);
    const two = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'stdin-two', 'sh', '-c', 'read a; read b; echo "$a$b"'], {
      input: 'x\ny\n',
    });
    assert.equal(two.stdout.trim(), 'xy');
  });

  test('--log-uri file://: stdout and stderr appended to one file', async () => {
    const log = join(dir, 'logs', 'out.log');
    const r = await ctr(NS, ['run', '--rm', ...RUNTIME, '--log-uri', `file://${log}`, image, 'logfile', 'sh', '-c', 'echo to-out; echo to-err >&2']);
    ok(r, 'run');
    assert.equal(r.stdout, '');
    assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean).sort(), ['to-err', 'to-out']);
  });

  test('a command that cannot start fails Create with the runtime error, and leaves nothing behind', async () => {
    const r = await ctr(NS, ['run', '--rm', ...RUNTIME, image, 'nope', '/no/such/binary']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /OCI runtime create failed: .*no such file or directory/);
    const tasks = await ctr(NS, ['tasks', 'ls', '-q']);
    assert.doesNotMatch(tasks.stdout, /nope/);
    await eventually('shim gone', () => berthShims(c.address, NS).length, (n) => n === 0);
  });

  test('-t: the process gets a terminal; ctr sizes it', async () => {
    const r = await ctrOnTty(NS, ['run', '--rm', '-t', ...RUNTIME, image, 'tty', 'sh', '-c', 'test -t 0 && echo is-a-tty; tty; sleep 0.5; stty size']);
    assert.equal(r.code, 0, r.stdout);
    // `script` turns its stdin's EOF into a NUL, which the terminal echoes as ^@ wherever it lands.
    assert.match(r.stdout.replaceAll('^@', ''), /is-a-tty\r?\r\n\/dev\/pts\/0\r?\r\n24 80\r?\r\n/);
  });

  test('run -d, then tasks ls / ps / exec / pause / resume / metrics / kill / rm, with their events', async () => {
    const id = 'life';
    ok(await ctr(NS, ['run', '-d', ...RUNTIME, '--memory-limit', '33554432', image, id, 'sleep', '1000']), 'run -d');
    const ls = await ctr(NS, ['tasks', 'ls']);
    assert.match(ls.stdout, new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm'));
    const pid = Number(new RegExp(`^${id}\\s+(\\d+)`, 'm').exec(ls.stdout)?.[1]);

    const exec = await ctr(NS, ['tasks', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo from exec; echo to stderr >&2; exit 4']);
    assert.equal(exec.code, 4);
    assert.equal(exec.stdout, 'from exec\n');
    assert.equal(exec.stderr, 'to stderr\n');
    ok(await ctr(NS, ['tasks', 'exec', '-d', '--exec-id', 'e2', id, 'sleep', '1000']), 'exec -d');
    const again = await ctr(NS, ['tasks', 'exec', '-d', '--exec-id', 'e2', id, 'true']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /id e2: already exists/);

    const ps = await ctr(NS, ['tasks', 'ps', id]);
    ok(ps, 'ps');
    assert.match(ps.stdout, new RegExp(`^${pid}\\s+-$`, 'm'));
    assert.match(ps.stdout, /^\d+\s+&ProcessDetails\{ExecID:e2,/m);

    ok(await ctr(NS, ['tasks', 'pause', id]), 'pause');
    assert.match((await ctr(NS, ['tasks', 'ls'])).stdout, new RegExp(`^${id}\\s+${pid}\\s+PAUSED`, 'm'));
    const paused = await ctr(NS, ['tasks', 'exec', '--exec-id', 'e3', id, 'true']);
    assert.match(paused.stderr, /cannot exec in a paused state/);
    ok(await ctr(NS, ['tasks', 'resume', id]), 'resume');
    assert.match((await ctr(NS, ['tasks', 'ls'])).stdout, new RegExp(`^${id}\\s+${pid}\\s+RUNNING`, 'm'));

    const metrics = await ctr(NS, ['tasks', 'metrics', id]);
    ok(metrics, 'metrics');
    assert.match(metrics.stdout, /^memory\.limit_in_bytes\s+33554432\s*$/m);
    assert.match(metrics.stdout, /^memory\.usage_in_bytes\s+[1-9]\d*\s*$/m);
    assert.match(metrics.stdout, /^cpuacct\.usage\s+[1-9]\d*\s*$/m);
    assert.match(metrics.stdout, /^pids\.current\s+2\s*$/m, 'the init and exec e2');

    const checkpoint = await ctr(NS, ['tasks', 'checkpoint', id]);
    assert.notEqual(checkpoint.code, 0);
    assert.match(checkpoint.stderr, /checkpoint is not supported by berth's shim yet; see the stateful-containers work: not implemented/);

    ok(await ctr(NS, ['tasks', 'kill', '-s', 'SIGTERM', '--exec-id', 'e2', id]), 'kill exec');
    ok(await ctr(NS, ['tasks', 'kill', '-s', 'SIGKILL', id]), 'kill');
    await eventually('stopped', async () => (await ctr(NS, ['tasks', 'ls'])).stdout, (s) => new RegExp(`^${id}\\s+${pid}\\s+STOPPED`, 'm').test(s));
    const stopped = await ctr(NS, ['tasks', 'kill', id]);
    assert.notEqual(stopped.code, 0);
    assert.match(stopped.stderr, /process already finished: not found/);
    ok(await ctr(NS, ['tasks', 'rm', id]), 'tasks rm');
    ok(await ctr(NS, ['containers', 'rm', id]), 'containers rm');

    const topics = await eventually(
      'events',
      () => eventsFor(id),
      (t) => t.includes(`${NS} /tasks/delete`),
    );
    for (const topic of ['create', 'start', 'exec-added', 'exec-started', 'paused', 'resumed', 'exit', 'delete']) {
      assert.ok(topics.includes(`${NS} /tasks/${topic}`), `/tasks/${topic} in ${JSON.stringify(topics)}`);
    }
    const order = topics.filter((t) => /create|start$|delete/.test(t));
    assert.deepEqual(order, [`${NS} /tasks/create`, `${NS} /tasks/start`, `${NS} /tasks/delete`]);
    const exits = eventLines.filter((l) => l.includes(`"container_id":"${id}"`) && l.includes('/tasks/exit'));
    assert.ok(exits.some((l) => l.includes(`"id":"${id}"`) && l.includes('"exit_status":137')), exits.join('\n'));
    assert.ok(exits.some((l) => l.includes('"id":"e1"') && l.includes('"exit_status":4')), exits.join('\n'));
  });

  test('the task API over ttrpc: Connect, State, ResizePty, Info, and the stock shim’s errors', async () => {
    const id = 'api';
    const tty = await ctrOnTty(NS, ['run', '-d', '-t', ...RUNTIME, image, id, 'sh']);
    assert.equal(tty.code, 0, tty.stdout);
    const { client, task, info } = shimClient(NS, id);
    try {
      const md = { namespace: NS, timeoutMs: 10_000 };
      const connect = await task.unary<{ shimPid: number; taskPid: number }>('Connect', { id }, md);
      assert.deepEqual(berthShims(c.address, NS).map((s) => s.pid), [connect.shimPid]);
      const state = await task.unary<Record<string, unknown>>('State', { id }, md);
      assert.equal(state.status, 2);
      assert.equal(state.pid, connect.taskPid);
      assert.equal(state.terminal, true);
      assert.equal(state.bundle, bundleOf(NS, id));

      await task.unary('ResizePty', { id, width: 123, height: 45 }, md);
      const size = await ctr(NS, ['tasks', 'exec', '--exec-id', 'size', id, 'sh', '-c', 'stty -F /dev/console size']);
      ok(size, 'stty size');
      assert.equal(size.stdout, '45 123\n');

      const execTty = await ctrOnTty(NS, ['tasks', 'exec', '-t', '--exec-id', 'tty', id, 'sh', '-c', 'test -t 0 && echo exec-has-a-tty']);
      assert.equal(execTty.code, 0, execTty.stdout);
      assert.match(execTty.stdout, /exec-has-a-tty/);

      const shim = await info.unary<{ containers: string[]; namespace: string; group: string; socket: string }>('Info', {});
      assert.deepEqual(shim.containers, [id]);
      assert.equal(shim.namespace, NS);
      assert.equal(shim.group, '');
      assert.equal(shim.socket, shimSocketPath({ address: c.address, namespace: NS, group: '' }));

      await assert.rejects(task.unary('Delete', { id }, md), (e: Error) => e instanceof UnknownError && e.message === 'cannot delete a running process');
      await assert.rejects(task.unary('State', { id: 'ghost' }, md), (e: Error) => e instanceof NotFoundError && e.message === 'container not created: not found');
      await assert.rejects(task.unary('Kill', { id, execId: 'ghost', signal: 9 }, md), (e: Error) => e instanceof NotFoundError && /process does not exist ghost/.test(e.message));
      await assert.rejects(task.unary('Checkpoint', { id, path: '/tmp/x' }, md), NotImplementedError);
      const spec = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['true'], cwd: '/' })) };
      await task.unary('Exec', { id, execId: 'x1', spec }, md);
      await assert.rejects(task.unary('Exec', { id, execId: 'x1', spec }, md), (e: Error) => e instanceof AlreadyExistsError && e.message === 'id x1: already exists');
      await task.unary('Delete', { id, execId: 'x1' }, md);

      // Update: runc update with the LinuxResources JSON; the new limit shows in the metrics.
      const resources = { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ memory: { limit: 67108864 } })) };
      await task.unary('Update', { id, resources }, md);
      assert.match((await ctr(NS, ['tasks', 'metrics', id])).stdout, /^memory\.limit_in_bytes\s+67108864\s*$/m);
    } finally {
      client.close();
    }
    ok(await ctr(NS, ['tasks', 'kill', '-s', 'SIGKILL', id]), 'kill');
    await eventually('stopped', async () => (await ctr(NS, ['tasks', 'ls'])).stdout, (s) => /STOPPED/.test(s));
    ok(await ctr(NS, ['tasks', 'rm', id]), 'rm');
    ok(await ctr(NS, ['containers', 'rm', id]), 'containers rm');
  });

  test('OOM: a process over its memory limit is killed and /tasks/oom is published', async () => {
    const r = await ctr(NS, ['run', '--rm', ...RUNTIME, '--memory-limit', '16777216', image, 'oom', 'busybox', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1']);
    assert.equal(r.code, 137, r.stderr);
    await eventually('oom event', () => eventsFor('oom'), (t) => t.includes(`${NS} /tasks/oom`));
  });

  test('runtime options: io.containerd.runc.v2 with --runc-binary and --runc-root; SystemdCgroup refused without systemd', async () => {
    // A runc that records how it is called: BinaryName and Root must reach every command.
    const calls = join(dir, 'runc-calls');
    const wrapper = join(dir, 'bin', 'berth-test-runc');
    writeFileSync(wrapper, `#!/bin/sh\necho "$*" >> ${calls}\nexec runc "$@"\n`, { mode: 0o755 });
    const id = 'custom';
    const root = join(dir, 'runc-root');
    ok(await ctr(NS_RUNC, ['run', '-d', '--runc-binary', wrapper, '--runc-root', root, image, id, 'sleep', '1000']), 'run -d');
    const runtime = JSON.parse(readFileSync(join(bundleOf(NS_RUNC, id), 'berth-runtime.json'), 'utf8'));
    assert.deepEqual(runtime, { binary: wrapper, root: join(root, NS_RUNC), systemdCgroup: false });
    const state = await runCommand('runc', ['--root', join(root, NS_RUNC), 'state', id]);
    ok(state, 'runc state under --runc-root');
    assert.equal(JSON.parse(state.stdout).status, 'running');
    const exec = await ctr(NS_RUNC, ['tasks', 'exec', '--exec-id', 'e', id, 'echo', 'custom exec']);
    assert.equal(exec.stdout, 'custom exec\n');
    ok(await ctr(NS_RUNC, ['tasks', 'kill', '-s', 'SIGKILL', id]), 'kill');
    await eventually('stopped', async () => (await ctr(NS_RUNC, ['tasks', 'ls'])).stdout, (s) => /STOPPED/.test(s));
    ok(await ctr(NS_RUNC, ['tasks', 'rm', id]), 'rm');
    ok(await ctr(NS_RUNC, ['containers', 'rm', id]), 'containers rm');
    // --no-pivot comes as task options (NoPivotRoot alone, so the default runc runs it).
    ok(await ctr(NS_RUNC, ['run', '--rm', '--no-pivot', image, 'nopivot', 'true']), 'run --no-pivot');
    const defaults = readFileSync(join(dir, 'runc-default-calls'), 'utf8').trim().split('\n');
    assert.ok(defaults.some((l) => / create .*--no-pivot nopivot$/.test(l)), defaults.join('\n'));
    const logged = readFileSync(calls, 'utf8').trim().split('\n');
    for (const cmd of ['create', 'start', 'exec', 'kill', 'delete']) {
      assert.ok(
        logged.some((l) => l.startsWith(`--root ${join(root, NS_RUNC)} --log `) && l.includes(` ${cmd} `)),
        `${cmd} in ${logged.join('\n')}`,
      );
    }

    // crun: it runs here only where its cgroup support allows (it refuses this hybrid host's
    // controller-bearing cgroup2 mount); either way the shim drives it, not runc.
    const crun = await ctr(NS_RUNC, ['run', '--rm', '--runc-binary', 'crun', image, 'crun', 'echo', 'hi from crun']);
    if (crun.code === 0) assert.equal(crun.stdout, 'hi from crun\n');
    else assert.match(crun.stderr, /OCI runtime create failed: cgroups in hybrid mode not supported/);

    const sd = await ctr(NS_RUNC, ['run', '--rm', '--runc-systemd-cgroup', '--cgroup', 'machine.slice:berth:sd', image, 'sd', 'true']);
    assert.notEqual(sd.code, 0);
    assert.match(sd.stderr, /SystemdCgroup is set but systemd is not running on this host/);
  });

  test('one shim per namespace group: 20 sleeping containers, one process; its RSS with 1 and 20', async (t) => {
    const ids = Array.from({ length: 20 }, (_, i) => `sleep-${i}`);
    ok(await ctr(NS_GROUP, ['run', '-d', ...RUNTIME, image, ids[0] as string, 'sleep', '100000']), 'first');
    await sleep(500);
    const [one] = berthShims(c.address, NS_GROUP);
    assert.ok(one, 'a shim runs');
    for (const id of ids.slice(1)) ok(await ctr(NS_GROUP, ['run', '-d', ...RUNTIME, image, id, 'sleep', '100000']), id);
    await sleep(500);
    const shims = berthShims(c.address, NS_GROUP);
    assert.deepEqual(
      shims.map((s) => s.pid),
      [one.pid],
      'every container of the namespace is served by the first shim',
    );
    const twenty = shims[0] as { pid: number; rssKiB: number };
    const perContainer = (twenty.rssKiB - one.rssKiB) / 19;
    const line = `shim RSS: 1 container ${(one.rssKiB / 1024).toFixed(1)} MiB, 20 containers ${(twenty.rssKiB / 1024).toFixed(1)} MiB (${perContainer.toFixed(0)} KiB per extra container)`;
    t.diagnostic(line);
    console.log(`# ${line}`);
    assert.ok(perContainer < 1024, line);
    assert.deepEqual(zombieChildren(twenty.pid), [], 'the shim reaps what it owns');
    const addresses = new Set(ids.map((id) => readFileSync(join(bundleOf(NS_GROUP, id), 'address'), 'utf8')));
    assert.equal(addresses.size, 1);

    // A group annotation makes another shim; the same group shares it.
    const annotation = ['--annotation', 'io.containerd.runc.v2.group=g1'];
    ok(await ctr(NS_GROUP, ['run', '-d', ...RUNTIME, ...annotation, image, 'g1-a', 'sleep', '100000']), 'g1-a');
    ok(await ctr(NS_GROUP, ['run', '-d', ...RUNTIME, ...annotation, image, 'g1-b', 'sleep', '100000']), 'g1-b');
    assert.equal(berthShims(c.address, NS_GROUP).length, 2);
    const g1 = readFileSync(join(bundleOf(NS_GROUP, 'g1-a'), 'address'), 'utf8');
    assert.equal(g1, `unix://${shimSocketPath({ address: c.address, namespace: NS_GROUP, group: 'g1' })}`);
    assert.equal(readFileSync(join(bundleOf(NS_GROUP, 'g1-b'), 'address'), 'utf8'), g1);

    for (const id of [...ids, 'g1-a', 'g1-b']) ok(await ctr(NS_GROUP, ['tasks', 'kill', '-s', 'SIGKILL', id]), `kill ${id}`);
    await eventually('all stopped', async () => (await ctr(NS_GROUP, ['tasks', 'ls'])).stdout, (s) => !/RUNNING/.test(s));
    for (const id of [...ids, 'g1-a', 'g1-b']) {
      ok(await ctr(NS_GROUP, ['tasks', 'rm', id]), `rm ${id}`);
      ok(await ctr(NS_GROUP, ['containers', 'rm', id]), `containers rm ${id}`);
    }
    // The last Delete ends each shim, and it takes its socket with it.
    await eventually('shims gone', () => berthShims(c.address, NS_GROUP).length, (n) => n === 0);
    assert.equal(existsSync(shimSocketPath({ address: c.address, namespace: NS_GROUP, group: '' })), false);
    assert.equal(existsSync(g1.slice('unix://'.length)), false);
  });

  test('containerd killed and started again: the task is still RUNNING, can be killed, and its exit reaches the new daemon', async () => {
    const id = 'survivor';
    ok(await ctr(NS_RESTART, ['run', '-d', ...RUNTIME, image, id, 'sleep', '100000']), 'run -d');
    const before = (await ctr(NS_RESTART, ['tasks', 'ls'])).stdout;
    const pid = Number(new RegExp(`^${id}\\s+(\\d+)\\s+RUNNING`, 'm').exec(before)?.[1]);
    assert.ok(pid > 0, before);
    const [shim] = berthShims(c.address, NS_RESTART);
    assert.ok(shim);

    process.kill(c.pid, 'SIGKILL');
    await eventually('containerd gone', () => alive(c.pid), (a) => !a);
    restarted = spawn('containerd', ['--config', join(c.dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'ignore'] });
    await eventually('containerd back', async () => (await ctr(NS_RESTART, ['version'], { timeoutMs: 5000 })).code, (code) => code === 0, 20_000);
    await subscribe();

    assert.match((await ctr(NS_RESTART, ['tasks', 'ls'])).stdout, new RegExp(`^${id}\\s+${pid}\\s+RUNNING`, 'm'));
    assert.ok(alive(shim.pid), 'the same shim serves on');
    ok(await ctr(NS_RESTART, ['tasks', 'kill', '-s', 'SIGKILL', id]), 'kill');
    await eventually('stopped', async () => (await ctr(NS_RESTART, ['tasks', 'ls'])).stdout, (s) => new RegExp(`^${id}\\s+${pid}\\s+STOPPED`, 'm').test(s));
    await eventually(
      'exit event through the new daemon',
      () => eventLines.filter((l) => l.includes('/tasks/exit') && l.includes(`"container_id":"${id}"`)),
      (l) => l.some((x) => x.includes('"exit_status":137')),
    );
    ok(await ctr(NS_RESTART, ['tasks', 'rm', id]), 'rm');
    ok(await ctr(NS_RESTART, ['containers', 'rm', id]), 'containers rm');
    await eventually('shim gone', () => alive(shim.pid), (a) => !a);
  });
});
