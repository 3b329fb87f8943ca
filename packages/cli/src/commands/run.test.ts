import { BerthClient, deleteContainer, deleteTask } from '@berth/client';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runCli } from '../cli.js';
import { ExitCode } from '../exit-code.js';
import { engineAvailability, type EngineName, startEngine, type TestEngine } from '@berth/client/testing';

/*
 * `berth run`, `berth containers` and `berth tasks` against a real engine:
 * containerd 1.6 first, berthd once it serves tasks (skipped with the reason
 * until then; BERTH_TEST_BERTHD_ADDRESS=<socket> runs against a berthd
 * already running; BERTH_TEST_ENGINES picks engines). In-process runs give
 * the CLI their own streams; the disconnect and signal cases run the real
 * `berth` binary as a separate process.
 */

const execFileP = promisify(execFile);
const NS = `berth-cli-run-${process.pid}`;
const SERVICES = ['containers', 'tasks', 'snapshots', 'content', 'images', 'leases', 'diff'];
const external = process.env.BERTH_TEST_BERTHD_ADDRESS;
const MAIN = fileURLToPath(new URL('../main.js', import.meta.url));

async function smallImage(): Promise<{ name: string; archive: string } | string> {
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
  const noCtr = spawnSync('ctr', ['--version']).error ? 'ctr is not installed' : undefined;
  const notRoot = process.getuid?.() !== 0 ? 'running containers needs root' : undefined;
  return base.map((e) => {
    const skip = (e.name === 'berthd' && external ? undefined : e.skip) ?? noCtr ?? notRoot;
    return { name: e.name, ...(skip ? { skip } : {}) };
  });
}

const image = await smallImage();
const engines = typeof image === 'string' ? [] : await availability();
if (typeof image === 'string') describe('berth run, containers and tasks', { skip: image }, () => {});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Wait until `check` holds, polling. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const { name, skip } of engines) {
  const img = image as { name: string; archive: string };
  describe(`berth run, containers and tasks on ${name}`, { skip }, () => {
    let engine: TestEngine;
    let client: BerthClient;
    const children = new Set<ChildProcess>();

    /** The CLI in-process, with its own stdin and binary stdout/stderr. */
    async function berth(args: readonly string[], stdin?: string | Readable): Promise<Run> {
      let stdout = '';
      let stderr = '';
      const sink = (append: (t: string) => void) =>
        new Writable({
          write(chunk: Buffer, _enc, cb) {
            append(chunk.toString());
            cb();
          },
        });
      const code = await runCli(['--address', engine.address, '--namespace', NS, ...args], {
        stdout: (t) => (stdout += t),
        stderr: (t) => (stderr += t),
        env: {},
        interrupted: () => new AbortController().signal,
        // Byte streams (see commands/run.ts ProcessIOStreams).
        ...{
          stdin: typeof stdin === 'string' ? Readable.from([stdin]) : (stdin ?? Readable.from([])),
          stdoutStream: sink((t) => (stdout += t)),
          stderrStream: sink((t) => (stderr += t)),
        },
      });
      return { code, stdout, stderr };
    }

    /** The real `berth` binary in its own process (stdio piped). */
    function berthProcess(args: readonly string[]): ChildProcess & { out: () => string } {
      const child = spawn(process.execPath, [MAIN, '--address', engine.address, '--namespace', NS, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      children.add(child);
      child.once('exit', () => children.delete(child));
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      return Object.assign(child, { out: () => out });
    }

    /** Whatever a failed test left of these containers goes, so the next tests start clean. */
    async function remove(...ids: string[]): Promise<void> {
      for (const id of ids) {
        await client.tasks.resume(id).catch(() => {});
        await deleteTask(client, id, { force: true }).catch(() => {});
        await deleteContainer(client, id).catch(() => {});
      }
    }
    const ids = async () => (await berth(['containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean);

    before(async () => {
      engine = name === 'berthd' && external ? { name, address: external, close: async () => {} } : await startEngine(name);
      client = new BerthClient({ address: engine.address, namespace: NS });
      await execFileP('ctr', ['-a', engine.address, '-n', NS, 'images', 'import', img.archive]);
    });
    after(async () => {
      for (const child of children) child.kill('SIGKILL');
      if (client) {
        for (const t of await client.tasks.list().catch(() => [])) {
          await client.tasks.resume(t.id).catch(() => {});
          await deleteTask(client, t.id, { force: true }).catch(() => {});
        }
        for (const c of await client.containers.list().catch(() => [])) await deleteContainer(client, c.id).catch(() => {});
      }
      if (engine) await execFileP('ctr', ['-a', engine.address, '-n', NS, 'images', 'rm', '--sync', img.name]).catch(() => {});
      client?.close();
      await engine?.close();
      for (const controller of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
        try {
          rmdirSync(`/sys/fs/cgroup/${controller}/${NS}`);
        } catch {
          // absent or busy
        }
      }
    });

    it('run --rm prints the output and exits with the container’s status', async () => {
      let r = await berth(['run', '--rm', img.name, 'r1', 'echo', 'hello']);
      assert.deepEqual(r, { code: 0, stdout: 'hello\n', stderr: '' });
      // Options after IMAGE belong to the command, global ones included (-n here is echo's).
      r = await berth(['run', '--rm', img.name, 'r1', 'echo', '-n', 'no newline']);
      assert.deepEqual(r, { code: 0, stdout: 'no newline', stderr: '' });
      r = await berth(['run', '--rm', img.name, 'r1', 'sh', '-c', 'echo to stderr >&2; exit 7']);
      assert.deepEqual(r, { code: 7, stdout: '', stderr: 'to stderr\n' });
      assert.ok(!(await ids()).includes('r1'));
    });

    it('run -i pipes stdin in; without -i the container reads nothing', async () => {
      let r = await berth(['run', '--rm', '-i', img.name, 'i1', 'sh', '-c', 'cat; echo eof'], 'piped 1\npiped 2\n');
      assert.deepEqual(r, { code: 0, stdout: 'piped 1\npiped 2\neof\n', stderr: '' });
      r = await berth(['run', '--rm', img.name, 'i1', 'sh', '-c', 'cat; echo eof'], 'ignored\n');
      assert.deepEqual(r, { code: 0, stdout: 'eof\n', stderr: '' });
    });

    it('run sets env, user, mounts and working dir', async () => {
      const r = await berth([
        'run',
        '--rm',
        '--env',
        'A=1',
        '--env',
        'B=2',
        '-u',
        'nobody',
        '--cwd',
        '/tmp',
        '--mount',
        'type=bind,src=/etc,dst=/hostetc,options=rbind:ro',
        img.name,
        'u1',
        'sh',
        '-c',
        'echo $A$B; id -u; pwd; test -f /hostetc/hostname && echo mounted; touch /hostetc/x 2>/dev/null || echo read-only',
      ]);
      assert.deepEqual(r, { code: 0, stdout: '12\n65534\n/tmp\nmounted\nread-only\n', stderr: '' });
    });

    it('run -d, then tasks ls/ps/exec/pause/resume/metrics/kill/rm and containers ls/info/label/rm', async (t) => {
      t.after(() => remove('d1'));
      let r = await berth(['run', '-d', '--memory-limit', '25000000', '--label', 'team=a', img.name, 'd1', 'sleep', '1000']);
      assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });

      r = await berth(['tasks', 'ls']);
      assert.match(r.stdout, /^TASK\s+PID\s+STATUS\nd1\s+\d+\s+RUNNING\n$/);
      r = await berth(['containers', 'ls']);
      assert.match(r.stdout, new RegExp(`^CONTAINER\\s+IMAGE\\s+RUNTIME\\nd1\\s+${img.name.replace(/[.]/g, '\\.')}\\s+io\\.containerd\\.runc\\.v2\\n$`));

      r = await berth(['tasks', 'exec', '--exec-id', 'e1', 'd1', 'sh', '-c', 'echo in exec; exit 5']);
      assert.deepEqual(r, { code: 5, stdout: 'in exec\n', stderr: '' });
      r = await berth(['tasks', 'exec', '-d', '--exec-id', 'e2', 'd1', 'sleep', '1000']);
      assert.equal(r.code, 0, r.stderr);
      r = await berth(['tasks', 'exec', '-d', '--exec-id', 'e2', 'd1', 'true']);
      assert.equal(r.code, ExitCode.Failed);
      assert.match(r.stderr, /^berth: .*e2.*exists/);
      r = await berth(['tasks', 'exec', 'd1', 'true']);
      assert.equal(r.code, ExitCode.Usage);

      r = await berth(['tasks', 'ps', 'd1']);
      assert.match(r.stdout, /^PID\s+INFO\n\d+\s+-\n\d+\s+&ProcessDetails\{ExecID:e2,XXX_unrecognized:\[\],\}\n$/);

      assert.equal((await berth(['tasks', 'pause', 'd1'])).code, 0);
      assert.match((await berth(['tasks', 'ls'])).stdout, /d1\s+\d+\s+PAUSED/);
      r = await berth(['tasks', 'rm', 'd1']);
      assert.equal(r.code, ExitCode.Failed);
      assert.match(r.stderr, /task must be stopped before deletion: paused/);
      assert.equal((await berth(['tasks', 'resume', 'd1'])).code, 0);
      assert.match((await berth(['tasks', 'ls'])).stdout, /d1\s+\d+\s+RUNNING/);

      r = await berth(['tasks', 'metrics', 'd1']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ID\s+TIMESTAMP\nd1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+0000 UTC\n\nMETRIC\s+VALUE\n/);
      const limit = Number(/(?:memory\.limit_in_bytes|memory\.usage_limit)\s+(\d+)/.exec(r.stdout)?.[1]);
      assert.ok(limit <= 25_000_000 && limit > 25_000_000 - 65_536, `limit ${limit}`);
      const json = JSON.parse((await berth(['tasks', 'metrics', '--format', 'json', 'd1'])).stdout);
      assert.ok(json.memory);

      r = await berth(['containers', 'label', 'd1', 'b=2', 'team=']);
      assert.deepEqual(r, { code: 0, stdout: 'b=2,io.containerd.image.config.stop-signal=SIGTERM\n', stderr: '' });
      const info = JSON.parse((await berth(['containers', 'info', 'd1'])).stdout);
      assert.equal(info.ID, 'd1');
      assert.equal(info.Runtime.Name, 'io.containerd.runc.v2');
      assert.equal(info.Runtime.Options.type_url, 'containerd.runc.v1.Options');
      assert.equal(info.Spec.linux.resources.memory.limit, 25_000_000);
      assert.equal(info.Spec.annotations.team, 'a');
      const spec = JSON.parse((await berth(['containers', 'info', '--spec', 'd1'])).stdout);
      assert.deepEqual(spec.process.args, ['sleep', '1000']);

      r = await berth(['containers', 'rm', 'd1']);
      assert.equal(r.code, ExitCode.Failed);
      assert.match(r.stderr, /cannot delete a non stopped container/);

      // sleep as PID 1 ignores the default SIGTERM.
      assert.equal((await berth(['tasks', 'kill', '-s', 'KILL', 'd1'])).code, 0);
      await until(async () => /STOPPED/.test((await berth(['tasks', 'ls'])).stdout), 'd1 to stop');
      r = await berth(['tasks', 'kill', 'd1']);
      assert.equal(r.code, ExitCode.Failed);
      r = await berth(['tasks', 'rm', 'd1']);
      assert.equal(r.code, 0);
      assert.match(r.stderr, /non-zero exit code 137/);
      assert.equal((await berth(['tasks', 'ls', '-q'])).stdout, '');
      assert.deepEqual(await berth(['containers', 'rm', 'd1']), { code: 0, stdout: '', stderr: '' });
      assert.equal((await berth(['containers', 'ls', '-q'])).stdout, '');
    });

    it('containers create, tasks start (-d), tasks rm -f', async (t) => {
      t.after(() => remove('c1', 'c2'));
      let r = await berth(['containers', 'create', img.name, 'c1', 'sh', '-c', 'echo started; exit 2']);
      assert.deepEqual(r, { code: 0, stdout: '', stderr: '' });
      r = await berth(['tasks', 'start', 'c1']);
      assert.deepEqual(r, { code: 2, stdout: 'started\n', stderr: '' });
      assert.equal((await berth(['tasks', 'ls', '-q'])).stdout, '');
      assert.equal((await berth(['containers', 'rm', 'c1'])).code, 0);

      assert.equal((await berth(['containers', 'create', img.name, 'c2', 'sleep', '1000'])).code, 0);
      assert.equal((await berth(['tasks', 'start', '-d', 'c2'])).code, 0);
      assert.match((await berth(['tasks', 'ls'])).stdout, /c2\s+\d+\s+RUNNING/);
      r = await berth(['tasks', 'rm', '-f', 'c2']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await berth(['containers', 'rm', 'c2'])).code, 0);

      // Attaching to a task that already exited reports its status at once (and deletes it, as ctr).
      assert.equal((await berth(['containers', 'create', img.name, 'c1', 'sh', '-c', 'exit 3'])).code, 0);
      assert.equal((await berth(['tasks', 'start', '-d', 'c1'])).code, 0);
      await until(async () => /c1\s+\d+\s+STOPPED/.test((await berth(['tasks', 'ls'])).stdout), 'c1 to stop');
      r = await berth(['tasks', 'attach', 'c1']);
      assert.deepEqual(r, { code: 3, stdout: '', stderr: '' });
      assert.equal((await berth(['tasks', 'ls', '-q'])).stdout, '');
      assert.equal((await berth(['containers', 'rm', 'c1'])).code, 0);
    });

    it('a client that disconnects mid-attach leaves the container running', async (t) => {
      t.after(() => remove('a1'));
      assert.equal((await berth(['run', '-d', '-i', img.name, 'a1', 'sh', '-c', 'while read l; do echo "got $l"; done'])).code, 0);
      const attach = berthProcess(['tasks', 'attach', 'a1']);
      attach.stdin?.write('first\n');
      await until(() => attach.out().includes('got first'), 'the attached client to see output');
      attach.kill('SIGKILL');
      await once(attach, 'exit');
      await new Promise((r) => setTimeout(r, 300));
      assert.match((await berth(['tasks', 'ls'])).stdout, /a1\s+\d+\s+RUNNING/);

      // A second client picks up where the first left off; its input's end ends the shell.
      const input = new PassThrough();
      const second = berth(['tasks', 'attach', 'a1'], input);
      input.end('second\n');
      const r = await second;
      assert.deepEqual(r, { code: 0, stdout: 'got second\n', stderr: '' });
      // ctr's attach deletes the task once it exited; the container stays.
      assert.equal((await berth(['tasks', 'ls', '-q'])).stdout, '');
      assert.equal((await berth(['containers', 'rm', 'a1'])).code, 0);
    });

    it('forwards signals to a foreground container and exits with its status', async (t) => {
      t.after(() => remove('s1'));
      const run = berthProcess([
        'run',
        '--rm',
        img.name,
        's1',
        'sh',
        '-c',
        'trap "echo got TERM; exit 9" TERM; echo ready; while true; do sleep 0.1; done',
      ]);
      await until(() => run.out().includes('ready'), 'the container to start', 20_000);
      run.kill('SIGTERM');
      const [code] = await once(run, 'exit');
      assert.equal(code, 9);
      assert.equal(run.out(), 'ready\ngot TERM\n');
      assert.ok(!(await ids()).includes('s1'));
    });

    it('run -t gives the container a terminal of our size, raw, and restores ours', { skip: spawnSync('script', ['--version']).error ? 'no script(1) to make a terminal' : false }, async () => {
      // script(1) makes the terminal berth runs in; its own stdin ends at once, which must not end the container's.
      const cmd = `stty cols 91 rows 33; ${process.execPath} ${MAIN} --address ${engine.address} --namespace ${NS} run --rm -t ${img.name} tty1 sh -c 'stty size; tty; exit 6'; echo "rc=$?"; stty -a`;
      const { stdout } = await execFileP('script', ['-qec', cmd, '/dev/null'], { timeout: 60_000 });
      assert.match(stdout, /^33 91\r\r\n\/dev\/pts\/\d+\r\r\nrc=6\r\n/);
      // Raw mode was undone: the line discipline echoes and translates again.
      assert.match(stdout, / icanon /);
      assert.match(stdout, / echo /);
    });

    it('refuses bad input', async (t) => {
      t.after(() => remove('b1', 'b2'));
      let r = await berth(['run', '--rm', '-d', img.name, 'b1', 'true']);
      assert.equal(r.code, ExitCode.Usage);
      assert.match(r.stderr, /--detach and --rm/);
      r = await berth(['run', '--memory-limit', 'lots', img.name, 'b1']);
      assert.equal(r.code, ExitCode.Usage);
      r = await berth(['run', '--mount', 'type=bind,src=/tmp', img.name, 'b1']);
      assert.equal(r.code, ExitCode.Usage);
      r = await berth(['tasks', 'kill', '-s', 'SIGNOPE', 'b1']);
      assert.equal(r.code, ExitCode.Usage);
      r = await berth(['run', '--rm', 'localhost/absent:1', 'b1', 'true']);
      assert.equal(r.code, ExitCode.Failed);
      assert.match(r.stderr, /not found/);
      r = await berth(['run', '--rm', '--runtime', 'io.containerd.nope.v1', img.name, 'b2', 'true']);
      assert.equal(r.code, ExitCode.Failed);
      assert.match(r.stderr, /containerd-shim-nope-v1/);
      assert.deepEqual((await ids()).filter((id) => id.startsWith('b')), []);
      r = await berth(['tasks', 'attach', 'none']);
      assert.equal(r.code, ExitCode.Failed);
      r = await berth(['containers', 'rm', 'none1', 'none2']);
      assert.equal(r.code, ExitCode.Failed);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 2);
    });
  });
}
