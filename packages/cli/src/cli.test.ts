import { BerthClient } from '@berth/client';
import { BERTH_VERSION } from '@berth/daemon';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from './cli.js';
import { CLI_VERSION } from './commands/version.js';
import { ExitCode } from './exit-code.js';
import { startTestDaemon, type TestDaemon } from '@berth/client/testing';

let d: TestDaemon;

before(async () => {
  d = await startTestDaemon();
});
after(async () => {
  await d?.close();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the CLI in-process against the test daemon (unless the args name another address). */
async function berth(
  args: readonly string[],
  opts: { env?: Record<string, string>; signal?: AbortSignal; address?: string | null; onOutput?: (text: string) => void } = {},
): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const address = opts.address === undefined ? ['--address', d.address] : opts.address === null ? [] : ['--address', opts.address];
  const code = await runCli([...address, ...args], {
    stdout: (t) => {
      stdout += t;
      opts.onOutput?.(stdout);
    },
    stderr: (t) => (stderr += t),
    env: opts.env ?? {},
    interrupted: () => opts.signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

/**
 * Run `berth events` until `trigger` has caused output matching `pattern`.
 * There is no "subscribed" acknowledgement, so trigger repeatedly (each call
 * gets a new attempt number) until the line shows up.
 */
async function watchEvents(args: readonly string[], trigger: (attempt: number) => Promise<unknown>, pattern: RegExp) {
  const ac = new AbortController();
  let seen = false;
  const run = berth(['events', ...args], {
    signal: ac.signal,
    onOutput: (out) => {
      seen ||= pattern.test(out);
    },
  });
  for (let attempt = 0; !seen && attempt < 100; attempt++) {
    await trigger(attempt);
    await new Promise((r) => setTimeout(r, 50));
  }
  ac.abort();
  return run;
}

describe('berth version', () => {
  it('prints the client, then the server with its UUID', async () => {
    const r = await berth(['version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Client:\\n  Version:  ${CLI_VERSION}\\n  Revision: .*\\n  Node version: v\\d+`));
    assert.match(r.stdout, new RegExp(`\\n\\nServer:\\n  Version:  ${BERTH_VERSION}\\n  Revision: .*\\n  UUID: [0-9a-f-]{36}\\n$`));
  });
});

describe('berth namespaces', () => {
  it('creates, lists, labels and removes', async () => {
    assert.deepEqual(await berth(['namespaces', 'create', 'cli-a', 'x=1', 'y=2']), { code: 0, stdout: '', stderr: '' });
    assert.equal((await berth(['ns', 'create', 'cli-b'])).code, 0);

    const ls = await berth(['ns', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.deepEqual(ls.stdout.split('\n'), ['NAME     LABELS', 'cli-a    x=1,y=2', 'cli-b', '']);
    assert.deepEqual(await berth(['ns', 'list', '-q']), { code: 0, stdout: 'cli-a\ncli-b\n', stderr: '' });

    // KEY= removes a label; the others stay.
    assert.equal((await berth(['ns', 'label', 'cli-a', 'x=', 'z=3'])).code, 0);
    const json = await berth(['ns', 'ls', '--json']);
    assert.deepEqual(JSON.parse(json.stdout), [
      { name: 'cli-a', labels: { y: '2', z: '3' } },
      { name: 'cli-b', labels: {} },
    ]);

    assert.deepEqual(await berth(['ns', 'remove', 'cli-a', 'cli-b']), { code: 0, stdout: 'cli-a\ncli-b\n', stderr: '' });
    assert.deepEqual(JSON.parse((await berth(['ns', 'ls', '--json'])).stdout), []);
  });

  it('carries on past a failed removal and exits 1', async () => {
    await berth(['ns', 'create', 'cli-c']);
    const r = await berth(['ns', 'rm', 'cli-missing', 'cli-c']);
    assert.equal(r.code, ExitCode.Failed);
    assert.equal(r.stdout, 'cli-c\n');
    assert.equal(r.stderr, 'berth: namespace "cli-missing": not found\n');
  });

  it('reports what the daemon refuses with exit 1', async () => {
    const bad = await berth(['ns', 'create', 'not ok']);
    assert.equal(bad.code, ExitCode.Failed);
    assert.match(bad.stderr, /^berth: namespace\.name: identifier "not ok" must match/);
    await berth(['ns', 'create', 'cli-dup']);
    const dup = await berth(['ns', 'create', 'cli-dup']);
    assert.deepEqual(dup, { code: ExitCode.Failed, stdout: '', stderr: 'berth: namespace "cli-dup": already exists\n' });
    await berth(['ns', 'rm', 'cli-dup']);
  });

  it('exits 2 for a malformed label without asking the daemon', async () => {
    const r = await berth(['ns', 'create', 'cli-d', 'novalue'], { address: '/nonexistent/berthd.sock' });
    assert.equal(r.code, ExitCode.Usage);
    assert.match(r.stderr, /^berth: invalid label "novalue": want KEY=VALUE\n/);
  });
});

describe('berth plugins', () => {
  it('lists plugins as a table, in detail, and as JSON, with filters', async () => {
    const table = await berth(['plugins', 'ls']);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^TYPE\s+ID\s+PLATFORMS\s+STATUS$/);
    assert.ok(lines.some((l) => /^io\.containerd\.grpc\.v1\s+namespaces\s+-\s+ok$/.test(l)), table.stdout);

    const json = await berth(['plugins', 'ls', '--json', 'type==io.containerd.grpc.v1']);
    const plugins = JSON.parse(json.stdout) as { type: string; id: string; status: { state: string } }[];
    assert.ok(plugins.length > 0 && plugins.every((p) => p.type === 'io.containerd.grpc.v1'));
    assert.ok(plugins.some((p) => p.id === 'events' && p.status.state === 'ok'));

    const detailed = await berth(['plugin', 'list', '--detailed', 'id==namespaces,type==io.containerd.grpc.v1']);
    assert.match(detailed.stdout, /^Type: +io\.containerd\.grpc\.v1\nID: +namespaces\n/);
    assert.match(detailed.stdout, /^Status: +ok$/m);
  });

  it('exits 1 on a filter the daemon cannot parse', async () => {
    const r = await berth(['plugins', 'ls', 'type==']);
    assert.equal(r.code, ExitCode.Failed);
    assert.match(r.stderr, /^berth: invalid filter "type==": expected value/);
  });
});

describe('berth events', () => {
  it('prints one line per event until interrupted, then exits 0', async () => {
    const client = new BerthClient({ address: d.address, namespace: 'cli-caller' });
    try {
      const r = await watchEvents(
        ['topic~="^/namespaces/"'],
        (i) => client.namespaces.create(`cli-ev${i}`),
        /\/namespaces\/create/,
      );
      assert.equal(r.code, 0, r.stderr);
      const first = r.stdout.split('\n')[0] ?? '';
      const [timestamp, namespace, topic, ...json] = first.split(' ');
      assert.ok(Math.abs(Date.parse(timestamp ?? '') - Date.now()) < 60_000, first);
      assert.equal(namespace, 'cli-caller');
      assert.equal(topic, '/namespaces/create');
      const data = JSON.parse(json.join(' '));
      assert.match(data.name, /^cli-ev\d+$/);
      assert.deepEqual(data, { name: data.name, labels: {} });
    } finally {
      client.close();
    }
  });

  it('uses BERTH_ADDRESS and BERTH_NAMESPACE from the environment', async () => {
    const env = { BERTH_ADDRESS: d.address, BERTH_NAMESPACE: 'from-env' };
    const r = await watchEvents(
      [],
      (i) => berth(['ns', 'create', `cli-env${i}`], { env, address: null }),
      / from-env \/namespaces\/create /,
    );
    assert.equal(r.code, 0, r.stderr);
    // --namespace wins over the environment.
    const flag = await watchEvents(
      [],
      (i) => berth(['-n', 'from-flag', 'ns', 'create', `cli-flag${i}`], { env, address: null }),
      / from-flag \/namespaces\/create /,
    );
    assert.equal(flag.code, 0, flag.stderr);
  });

  it('exits 1 on a bad filter', async () => {
    const r = await berth(['events', 'topic==']);
    assert.equal(r.code, ExitCode.Failed);
    assert.match(r.stderr, /^berth: invalid filter/);
  });
});

describe('exit codes', () => {
  it('exits 2 for unknown commands and options, 0 for --help and --version', async () => {
    for (const args of [['nope'], ['--bogus', 'version'], ['ns', 'ls', '--bogus'], ['version', 'extra'], [], ['--timeout', 'soon', 'version']]) {
      const r = await berth(args);
      assert.equal(r.code, ExitCode.Usage, `${args.join(' ')}: ${r.stderr}`);
      assert.notEqual(r.stderr, '');
    }
    const help = await berth(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: berth/);
    assert.deepEqual(await berth(['--version']), { code: 0, stdout: `${CLI_VERSION}\n`, stderr: '' });
  });

  it('exits 3 and names the address when no daemon answers', async () => {
    const r = await berth(['ns', 'ls'], { address: `${d.address}.gone` });
    assert.equal(r.code, ExitCode.Unreachable);
    assert.match(r.stderr, /^berth: cannot connect to berthd at \S+berthd\.sock\.gone \(ENOENT\)\nberth: start it with `npm start`/);
  });

  it('applies --timeout', async () => {
    assert.equal((await berth(['--timeout', '5s', 'ns', 'ls'])).code, 0);
  });
});
