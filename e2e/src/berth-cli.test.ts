import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BERTH_CLI, berth, run, spawnCollect, startBerthd, type TestDaemon, tempDir } from './harness.js';

/** The berth CLI, as a separate process, against a real berthd. */
describe('berth CLI against berthd', () => {
  let d: TestDaemon;
  const dirs: string[] = [];

  before(async () => {
    d = await startBerthd();
  });
  after(async () => {
    await d?.cleanup();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  /** berth with only the environment to find the daemon. */
  const berthEnv = (args: readonly string[], env: NodeJS.ProcessEnv) => run(process.execPath, [BERTH_CLI, ...args], { env });

  /**
   * Start `berth events`, then call `trigger` (with a fresh number each
   * time) until `pattern` shows up: nothing tells when a subscription is live.
   */
  async function eventsCausedBy(args: readonly string[], trigger: (i: number) => Promise<unknown>, pattern: RegExp) {
    const events = spawnCollect(process.execPath, [BERTH_CLI, '--address', d.address, 'events', ...args]);
    try {
      for (let i = 0; ; i++) {
        await trigger(i);
        try {
          await events.waitFor(pattern, 500);
          return events.output();
        } catch (err) {
          if (i >= 20) throw err;
        }
      }
    } finally {
      await events.stop();
    }
  }

  test('version prints client and server with the UUID', async () => {
    const r = await berth(d, ['version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Client:\n {2}Version: {2}0\.1\.0\n {2}Revision: .*\n {2}Node version: v\d+/);
    assert.match(r.stdout, /\n\nServer:\n {2}Version: {2}0\.1\.0\n {2}Revision: .*\n {2}UUID: [0-9a-f-]{36}\n$/);
  });

  test('namespaces create, ls, label and rm', async () => {
    let r = await berth(d, ['namespaces', 'create', 'cli-team', 'owner=alice', 'tier=gold']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
    r = await berth(d, ['ns', 'create', 'cli-other']);
    assert.equal(r.code, 0, r.stderr);

    r = await berth(d, ['ns', 'label', 'cli-team', 'tier=', 'env=prod']);
    assert.equal(r.code, 0, r.stderr);

    r = await berth(d, ['namespaces', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^NAME +LABELS$/);
    assert.ok(lines.includes('cli-other'), r.stdout);
    const team = lines.find((l) => l.startsWith('cli-team '));
    assert.match(team ?? '', /^cli-team +env=prod,owner=alice$/);
    // Columns line up.
    assert.equal(team?.indexOf('env='), lines[0]?.indexOf('LABELS'));

    r = await berth(d, ['ns', 'list', '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.split('\n').includes('cli-team'));
    assert.ok(!r.stdout.includes('owner'));

    r = await berth(d, ['ns', 'ls', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const listed = JSON.parse(r.stdout) as { name: string; labels: Record<string, string> }[];
    assert.ok(Array.isArray(listed));
    assert.deepEqual(
      listed.find((n) => n.name === 'cli-team'),
      { name: 'cli-team', labels: { env: 'prod', owner: 'alice' } },
    );

    r = await berth(d, ['ns', 'remove', 'cli-team', 'cli-other']);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'cli-team\ncli-other\n', '']);
    r = await berth(d, ['ns', 'ls', '-q']);
    assert.ok(!r.stdout.split('\n').includes('cli-team'));
  });

  test('plugins ls as a table, as JSON and filtered', async () => {
    let r = await berth(d, ['plugins', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^TYPE +ID +PLATFORMS +STATUS$/);
    assert.ok(lines.some((l) => /^io\.containerd\.grpc\.v1 +namespaces +- +ok$/.test(l)), r.stdout);
    assert.ok(lines.some((l) => l.startsWith('io.containerd.event.v1 ')), r.stdout);

    r = await berth(d, ['plugins', 'ls', '--json', 'type==io.containerd.grpc.v1']);
    assert.equal(r.code, 0, r.stderr);
    const plugins = JSON.parse(r.stdout) as { type: string; id: string; status: { state: string } }[];
    assert.ok(plugins.length >= 4, r.stdout);
    assert.ok(plugins.every((p) => p.type === 'io.containerd.grpc.v1'));
    for (const id of ['version', 'namespaces', 'introspection', 'events']) {
      assert.equal(plugins.find((p) => p.id === id)?.status.state, 'ok', id);
    }

    r = await berth(d, ['plugins', 'ls', '--detailed', 'id==introspection']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Type: +io\.containerd\.grpc\.v1\nID: +introspection\n/);
  });

  test('events prints /namespaces/create caused by another client', async () => {
    const out = await eventsCausedBy(
      [],
      (i) => berth(d, ['-n', 'cli-caller', 'ns', 'create', `cli-ev${i}`]),
      /\/namespaces\/create/,
    );
    const line = out.split('\n').find((l) => l.includes('/namespaces/create')) ?? '';
    const [timestamp, namespace, topic, ...json] = line.split(' ');
    assert.ok(Math.abs(Date.parse(timestamp ?? '') - Date.now()) < 60_000, line);
    // The envelope carries the caller's namespace, as containerd's does.
    assert.equal(namespace, 'cli-caller');
    assert.equal(topic, '/namespaces/create');
    assert.match((JSON.parse(json.join(' ')) as { name: string }).name, /^cli-ev\d+$/);
  });

  test('events takes filters and exits 0 on SIGINT', async () => {
    const child = spawn(process.execPath, [BERTH_CLI, '--address', d.address, 'events', 'topic=="/namespaces/delete"'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      for (let i = 0; !stdout.includes('/namespaces/delete') && i < 40; i++) {
        await berth(d, ['ns', 'create', `cli-del${i}`]);
        await berth(d, ['ns', 'rm', `cli-del${i}`]);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(stdout, / \/namespaces\/delete \{"name":"cli-del\d+"\}\n/, stderr);
      assert.doesNotMatch(stdout, /\/namespaces\/create/);
      child.kill('SIGINT');
      assert.equal(await exited, 0, stderr);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  test('exit 1 for what the daemon refuses, with its message', async () => {
    let r = await berth(d, ['ns', 'rm', 'cli-unknown']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'berth: namespace "cli-unknown": not found\n');

    // rm carries on past a failure and still exits 1.
    await berth(d, ['ns', 'create', 'cli-rm2']);
    r = await berth(d, ['ns', 'rm', 'cli-unknown', 'cli-rm2']);
    assert.deepEqual([r.code, r.stdout], [1, 'cli-rm2\n']);

    r = await berth(d, ['ns', 'create', 'Bad_Name!']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^berth: namespace\.name: identifier "Bad_Name!" must match /);

    r = await berth(d, ['ns', 'create', 'cli-twice']);
    r = await berth(d, ['ns', 'create', 'cli-twice']);
    assert.deepEqual([r.code, r.stderr], [1, 'berth: namespace "cli-twice": already exists\n']);
  });

  test('exit 2 for usage errors', async () => {
    for (const args of [['--no-such-option', 'ns', 'ls'], ['ns', 'ls', '--bogus'], ['no-such-command'], ['ns', 'create', 'x', 'novalue']]) {
      const r = await berth(d, args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /^berth: /, args.join(' '));
    }
  });

  test('exit 3 when no daemon answers at the address', async () => {
    const dir = tempDir('berth-cli-e2e-');
    dirs.push(dir);
    const address = join(dir, 'nobody.sock');
    const r = await run(process.execPath, [BERTH_CLI, '--address', address, 'ns', 'ls']);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(`cannot connect to berthd at ${address}`), r.stderr);
    assert.match(r.stderr, /npm start/);
  });

  test('BERTH_ADDRESS and BERTH_NAMESPACE from the environment', async () => {
    let r = await berthEnv(['ns', 'ls', '-q'], { BERTH_ADDRESS: d.address });
    assert.equal(r.code, 0, r.stderr);

    const out = await eventsCausedBy(
      ['topic=="/namespaces/create"'],
      (i) => berthEnv(['ns', 'create', `cli-env${i}`], { BERTH_ADDRESS: d.address, BERTH_NAMESPACE: 'cli-from-env' }),
      / cli-from-env \/namespaces\/create /,
    );
    assert.match(out, / cli-from-env \/namespaces\/create \{/);

    // A flag wins over the environment.
    r = await berthEnv(['--address', join(d.dir, 'missing.sock'), 'ns', 'ls'], { BERTH_ADDRESS: d.address });
    assert.equal(r.code, 3);
  });
});
