import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ctr, spawnCollect, StartError, startBerthd, type TestDaemon } from './harness.js';

const INCOMPATIBLE = fileURLToPath(new URL('../fixtures/plugin-incompatible', import.meta.url));

/** Debian's ctr (containerd 1.6) against a real berthd, as a user would drive it. */
describe('ctr against berthd', () => {
  let d: TestDaemon;

  before(async () => {
    d = await startBerthd({
      config: [
        'version = 2',
        `plugin_packages = ["berth-plugin-hello", "berth-plugin-broken", ${JSON.stringify(INCOMPATIBLE)}, "berth-plugin-missing"]`,
        '[plugins."io.containerd.grpc.v1.hello"]',
        'greeting = "ahoy"',
      ].join('\n'),
    });
  });
  after(async () => {
    await d?.cleanup();
  });

  test('ctr version reports berthd and a UUID', async () => {
    const r = await ctr(d, ['version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Server:\s+Version:\s+0\.1\.0/);
    assert.match(r.stdout, /UUID: [0-9a-f-]{36}/);
  });

  test('namespaces create, label, ls and rm', async () => {
    let r = await ctr(d, ['namespaces', 'create', 'team-a', 'owner=alice', 'tier=gold']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['namespaces', 'label', 'team-a', 'tier=', 'env=prod']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['namespaces', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const line = r.stdout.split('\n').find((l) => l.startsWith('team-a'));
    assert.ok(line, r.stdout);
    assert.match(line, /env=prod/);
    assert.match(line, /owner=alice/);
    assert.doesNotMatch(line, /tier/);
    r = await ctr(d, ['namespaces', 'ls', '-q']);
    assert.ok(r.stdout.split('\n').includes('team-a'));
    r = await ctr(d, ['namespaces', 'create', 'team-a']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already exists/);
    r = await ctr(d, ['namespaces', 'rm', 'team-a']);
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d, ['namespaces', 'ls', '-q']);
    assert.ok(!r.stdout.split('\n').includes('team-a'));
  });

  test('bad names and oversized labels are refused with the field named', async () => {
    let r = await ctr(d, ['namespaces', 'create', 'Bad_Name!']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /namespace\.name.*must match/);
    r = await ctr(d, ['namespaces', 'create', 'labelled', `big=${'x'.repeat(4200)}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /namespace\.labels: label key and value greater than maximum size/);
    // berthd answers NotFound; ctr 1.6 then prints the name and exits 0, as it does against containerd.
    r = await ctr(d, ['namespaces', 'rm', 'never-made']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'never-made');
  });

  test('plugins ls shows built-in and third-party plugins with their status', async () => {
    const r = await ctr(d, ['plugins', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    const status = (type: string, id: string) =>
      r.stdout
        .split('\n')
        .find((l) => l.split(/\s+/)[0] === type && l.split(/\s+/)[1] === id)
        ?.trim()
        .split(/\s+/)
        .at(-1);
    assert.equal(status('io.containerd.metadata.v1', 'level'), 'ok');
    assert.equal(status('io.containerd.grpc.v1', 'namespaces'), 'ok');
    assert.equal(status('io.containerd.grpc.v1', 'hello'), 'ok');
    assert.equal(status('io.berth.example.v1', 'broken'), 'error');
    assert.equal(status('io.berth.package.v1', INCOMPATIBLE), 'error');
    assert.equal(status('io.berth.package.v1', 'berth-plugin-missing'), 'error');

    const detailed = await ctr(d, ['plugins', 'ls', '--detailed', 'id==hello']);
    assert.match(detailed.stdout, /greeting\s+ahoy/);
    const broken = await ctr(d, ['plugins', 'ls', '--detailed', 'id==broken']);
    assert.match(broken.stdout, /this plugin is broken on purpose/);
    const incompatible = await ctr(d, ['plugins', 'ls', '--detailed', 'type==io.berth.package.v1']);
    assert.match(incompatible.stdout, /needs @berth\/plugin-api \^9\.0\.0, but this berthd provides 0\.1\.0/);

    const filtered = await ctr(d, ['plugins', 'ls', 'type==io.containerd.grpc.v1']);
    const types = new Set(filtered.stdout.split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/)[0]));
    assert.deepEqual([...types], ['io.containerd.grpc.v1']);
  });

  test('ctr events receives /namespaces/create caused by another client', async () => {
    const events = spawnCollect('ctr', ['--address', d.address, 'events']);
    try {
      // ctr subscribes asynchronously: keep creating until one event shows.
      let n = 0;
      while (!/\/namespaces\/create/.test(events.output()) && n < 40) {
        await ctr(d, ['namespaces', 'create', `evt${n++}`]);
        await new Promise((r) => setTimeout(r, 100));
      }
      await events.waitFor(/\/namespaces\/create/);
      // The envelope carries the caller's namespace (ctr's default), the payload the new one.
      assert.match(events.output(), /default \/namespaces\/create \{"name":"evt\d+"\}/);
      await ctr(d, ['-n', 'team-b', 'namespaces', 'create', 'evt-ns']);
      await events.waitFor(/team-b \/namespaces\/create \{"name":"evt-ns"\}/);
      await ctr(d, ['namespaces', 'rm', 'evt-ns']);
      await events.waitFor(/\/namespaces\/delete \{"name":"evt-ns"\}/);
    } finally {
      await events.stop();
    }
  });
});

describe('berthd lifecycle', () => {
  test('a second berthd on the same root refuses to start; SIGTERM stops cleanly', async () => {
    const first = await startBerthd();
    try {
      assert.equal(statSync(first.address).mode & 0o777, 0o600);
      await assert.rejects(
        startBerthd({ dir: first.dir, address: join(first.dir, 'other.sock') }),
        (err: StartError) => {
          assert.equal(err.code, 1);
          assert.match(err.stderr, /berthd: another berthd \(pid \d+\) is already running with root/);
          return true;
        },
      );
      // The first one still serves.
      assert.equal((await ctr(first, ['namespaces', 'ls'])).code, 0);
      const exit = await first.stop('SIGTERM');
      assert.equal(exit.code, 0, first.logs());
      assert.equal(existsSync(first.address), false, 'socket removed on shutdown');
      assert.match(first.logs(), /"msg":"berthd stopped"/);
    } finally {
      await first.cleanup();
    }
  });

  test('namespaces and the server UUID survive a restart, even after SIGKILL', async () => {
    const first = await startBerthd();
    try {
      assert.equal((await ctr(first, ['namespaces', 'create', 'keep', 'a=1'])).code, 0);
      const uuid = /UUID: (\S+)/.exec((await ctr(first, ['version'])).stdout)?.[1];
      await first.stop('SIGKILL');
      const second = await startBerthd({ dir: first.dir });
      try {
        assert.match((await ctr(second, ['namespaces', 'ls'])).stdout, /keep\s+a=1/);
        assert.equal(/UUID: (\S+)/.exec((await ctr(second, ['version'])).stdout)?.[1], uuid);
      } finally {
        await second.stop();
      }
    } finally {
      await first.cleanup();
    }
  });

  test('a corrupt metadata database stops start-up with a clear error and is left as it was', async () => {
    const first = await startBerthd();
    try {
      assert.equal((await ctr(first, ['namespaces', 'create', 'precious'])).code, 0);
      await first.stop();
      const dbDir = join(first.root, 'io.containerd.metadata.v1.level', 'meta.level');
      const current = join(dbDir, 'CURRENT');
      const manifest = readFileSync(current, 'utf8').trim();
      writeFileSync(join(dbDir, manifest), 'garbage, not a LevelDB manifest');
      await assert.rejects(startBerthd({ dir: first.dir }), (err: StartError) => {
        assert.equal(err.code, 1);
        assert.match(err.stderr, /metadata database .* cannot be opened: .*will not repair it automatically/);
        return true;
      });
      assert.equal(readFileSync(join(dbDir, manifest), 'utf8'), 'garbage, not a LevelDB manifest');
    } finally {
      await first.cleanup();
    }
  });

  test('a bad config file is refused naming the key', async () => {
    await assert.rejects(startBerthd({ config: 'version = 2\nbogus = 1\n' }), (err: StartError) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /config\.toml: unknown key bogus/);
      return true;
    });
  });

  test("a plugin's bad config table fails that plugin only", async () => {
    const d = await startBerthd({
      config: 'plugin_packages = ["berth-plugin-hello"]\n[plugins."io.containerd.grpc.v1.hello"]\ngreeting = 5\n',
    });
    try {
      const r = await ctr(d, ['plugins', 'ls', '--detailed', 'id==hello']);
      assert.match(r.stdout, /plugins\."io\.containerd\.grpc\.v1\.hello"\.greeting: expected a string, got number/);
      assert.equal((await ctr(d, ['namespaces', 'ls'])).code, 0);
    } finally {
      await d.cleanup();
    }
  });
});
