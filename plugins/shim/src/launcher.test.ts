import { TtrpcClient, ttrpcService } from '@berth/ttrpc';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPORT_FD_ENV } from './flags.js';
import { SHIM_MAIN, SHIM_NODE_FLAGS, ShimLauncher, type ShimOrigin } from './launcher.js';
import { SHIM_INFO_SERVICE, shimProtoRoot } from './shim-proto.js';
import { shimLockPath } from './socket-address.js';
import { alive } from './test-support.js';

const argvOf = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (const deadline = Date.now() + ms; !ok(); await sleep(25)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'berth-shim-launcher-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('setCommandLine rewrites what /proc/PID/cmdline shows, and refuses what does not fit', async () => {
  const script = `
    const { setCommandLine, commandLine } = await import(${JSON.stringify(new URL('./proc-title.js', import.meta.url).href)});
    const fits = setCommandLine(['node', '-namespace', 'ns1', 'serve']);
    const tooLong = setCommandLine(['x'.repeat(5000)]);
    process.stdout.write(JSON.stringify({ fits, tooLong, now: commandLine() }));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, 'some', 'room', 'x'.repeat(64)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await new Promise((resolve) => child.once('close', resolve));
  const r = JSON.parse(out) as { fits: boolean; tooLong: boolean; now: string[] };
  assert.equal(r.fits, true);
  assert.equal(r.tooLong, false);
  assert.deepEqual(r.now, ['node', '-namespace', 'ns1', 'serve']);
});

describe('ShimLauncher with a spare', { skip: process.getuid?.() !== 0 && 'needs root (the subreaper, /proc)' }, () => {
  const origin: ShimOrigin = { address: join(dir, 'daemon.sock'), publishBinary: '/bin/true', env: { ...process.env, BERTH_SHIM_IDLE_MS: '500' } };
  const started = new Set<number>();
  let launcher: ShimLauncher | undefined;

  afterEach(async () => {
    launcher?.close();
    launcher = undefined;
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
    }
    await until('every shim of the test exited', () => [...started].every((p) => !alive(p)));
    started.clear();
  });

  /** `serve -spare` started as the launcher starts it, with its descriptor 3 and what came on it. */
  const spareByHand = () => {
    const env: NodeJS.ProcessEnv = { ...process.env, [REPORT_FD_ENV]: '3' };
    delete env.NODE_EXTRA_CA_CERTS;
    const child = spawn(process.execPath, [...SHIM_NODE_FLAGS, SHIM_MAIN, '-address', origin.address, '-publish-binary', '/bin/true', '-spare', 'serve'], {
      stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
      env,
    });
    started.add(child.pid as number);
    const control = child.stdio[3] as Socket;
    let text = '';
    control.on('data', (d: Buffer) => {
      text += d.toString();
    });
    return { child, control, said: () => text };
  };

  const target = (namespace: string, id = 'c1') => {
    const socket = join(dir, `${namespace}.sock`);
    return { namespace, id, socket, group: '' };
  };

  const info = async (socket: string) => {
    const client = new TtrpcClient(`unix://${socket}`);
    try {
      return await ttrpcService(client, shimProtoRoot(), SHIM_INFO_SERVICE).unary<{ shimPid: number; namespace: string; group: string; socket: string }>(
        'Info',
        {},
      );
    } finally {
      client.close();
    }
  };

  test('the spare serves the first group; no other is started while that shim lives, one is when it exits', async () => {
    launcher = new ShimLauncher({ spare: origin });
    launcher.keepSpare();
    const spare = launcher.sparePid as number;
    assert.ok(spare > 0);
    started.add(spare);
    assert.ok(argvOf(spare).includes('-spare'), argvOf(spare).join(' '));

    const t = target('ns-a');
    const pid = await launcher.launch(origin, t);
    assert.equal(pid, spare, 'the spare became the group shim');
    assert.equal(launcher.sparePid, undefined, 'and no new spare while it lives');
    const answer = await info(t.socket);
    assert.equal(answer.shimPid, spare);
    assert.equal(answer.namespace, 'ns-a');
    assert.equal(answer.socket, t.socket);
    // Its command line names the group, as that of a shim started for it does.
    const argv = argvOf(pid);
    assert.deepEqual(argv.slice(argv.indexOf('-namespace')), [
      '-namespace',
      'ns-a',
      '-address',
      origin.address,
      '-publish-binary',
      '/bin/true',
      '-id',
      'c1',
      '-socket',
      t.socket,
      '-group',
      'serve',
    ]);

    // A second group gets a shim of its own, started now.
    const t2 = target('ns-b');
    const second = await launcher.launch(origin, t2);
    started.add(second);
    assert.notEqual(second, spare);
    assert.equal((await info(t2.socket)).namespace, 'ns-b');
    assert.equal(launcher.sparePid, undefined);

    // Once neither lives, a spare waits again.
    process.kill(spare, 'SIGTERM');
    await until('the first shim exited', () => !alive(spare));
    assert.equal(launcher.sparePid, undefined, 'not while the second lives');
    process.kill(second, 'SIGTERM');
    const spareNow = () => launcher?.sparePid;
    await until('a new spare', () => spareNow() !== undefined);
    const next = spareNow() as number;
    started.add(next);
    assert.notEqual(next, spare);
    assert.equal(existsSync(t.socket), false, 'the exited shims removed their sockets');
    assert.equal(existsSync(shimLockPath(t.socket)), false);
  });

  test('a spare leaves when its launcher is closed, and when the launcher side of its socket closes', async () => {
    launcher = new ShimLauncher({ spare: origin });
    launcher.keepSpare();
    const first = launcher.sparePid as number;
    started.add(first);
    launcher.close();
    await until('the closed launcher’s spare exited', () => !alive(first));
    assert.equal(launcher.sparePid, undefined);

    // berthd killed: the spare reads end-of-file on its descriptor and exits by itself.
    const { child, control, said } = spareByHand();
    await until('ready', () => said() === 'ready\n');
    control.destroy();
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  });

  test('a spare given no usable group says why and exits; a spare for another daemon is not handed out', async () => {
    const { child, control, said } = spareByHand();
    await until('ready', () => said() === 'ready\n');
    control.write('{"namespace":"ns-c"}\n');
    const [code] = await once(child, 'exit');
    assert.equal(code, 1);
    assert.match(said(), /^ready\nerror: a spare needs a namespace, an id and a socket/);

    // A launcher whose spare is for another daemon does not hand it out.
    launcher = new ShimLauncher({ spare: { ...origin, address: join(dir, 'other.sock') } });
    launcher.keepSpare();
    const spare = launcher.sparePid as number;
    started.add(spare);
    const pid = await launcher.launch(origin, target('ns-d'));
    started.add(pid);
    assert.notEqual(pid, spare);
    assert.equal(launcher.sparePid, spare, 'the spare still waits');
  });

  test('a spare that cannot start is tried three times, then the launcher keeps none', async () => {
    const logged: string[] = [];
    // node refuses to start at all under this NODE_OPTIONS: every spare dies before it is ready.
    const broken = { ...origin, env: { ...origin.env, NODE_OPTIONS: '--require /nonexistent/berth-test-module.js' } };
    launcher = new ShimLauncher({ spare: broken, spareRetryMs: 50, log: (_level, msg) => logged.push(msg) });
    launcher.keepSpare();
    await until('three failed starts', () => logged.filter((m) => m.startsWith('the spare shim did not start')).length === 3);
    await sleep(300);
    assert.equal(logged.filter((m) => m.startsWith('the spare shim did not start')).length, 3, logged.join('\n'));
    assert.ok(logged.includes('the spare shim did not start; keeping none from now on'), logged.join('\n'));
    assert.equal(launcher.sparePid, undefined);
    // launch still starts a shim, without one.
    const pid = await launcher.launch(origin, target('ns-e'));
    started.add(pid);
    assert.equal((await info(target('ns-e').socket)).namespace, 'ns-e');
  });
});
