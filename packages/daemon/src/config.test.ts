import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig, parseConfig } from './config.js';

test('embedded defaults are /var/lib/berth, /run/berth and /run/berth/berthd.sock', () => {
  const c = parseConfig('', '(defaults)');
  assert.equal(c.root, '/var/lib/berth');
  assert.equal(c.state, '/run/berth');
  assert.equal(c.grpc.address, '/run/berth/berthd.sock');
  assert.equal(c.logLevel, 'info');
  assert.deepEqual(c.pluginPackages, []);
});

test('a containerd-shaped file is read and flags win over it', () => {
  const toml = `
version = 2
root = "/data/berth"
state = "/tmp/berth-state"
disabled_plugins = ["io.containerd.grpc.v1.healthcheck"]
required_plugins = ["io.containerd.grpc.v1.namespaces"]
plugin_packages = ["berth-plugin-hello"]
[grpc]
  address = "/tmp/b.sock"
  gid = 42
[debug]
  level = "debug"
[plugins."io.containerd.grpc.v1.hello"]
  greeting = "hi"
`;
  const c = parseConfig(toml, '/etc/berth/config.toml');
  assert.equal(c.root, '/data/berth');
  assert.equal(c.grpc.address, '/tmp/b.sock');
  assert.equal(c.grpc.gid, 42);
  assert.equal(c.logLevel, 'debug');
  assert.deepEqual(c.disabledPlugins, ['io.containerd.grpc.v1.healthcheck']);
  assert.deepEqual(c.requiredPlugins, ['io.containerd.grpc.v1.namespaces']);
  assert.deepEqual({ ...(c.plugins['io.containerd.grpc.v1.hello'] as object) }, { greeting: 'hi' });
  assert.equal(c.configDir, '/etc/berth');

  const flagged = parseConfig(toml, 'x.toml', { root: '/r', address: '/a.sock', logLevel: 'warn' });
  assert.equal(flagged.root, '/r');
  assert.equal(flagged.grpc.address, '/a.sock');
  assert.equal(flagged.logLevel, 'warn');
  // The socket follows --state unless an address is given.
  assert.equal(parseConfig('', '(defaults)', { state: '/s' }).grpc.address, '/s/berthd.sock');
});

test('mistakes are refused naming the file and the key', () => {
  const bad: Array<[string, RegExp]> = [
    ['bogus = 1', /f\.toml: unknown key bogus/],
    ['[grpc]\nport = 1', /unknown key grpc\.port/],
    ['version = 1', /version 1 is not supported/],
    ['root = 5', /root must be a non-empty string/],
    ['[grpc]\ngid = -1', /grpc\.gid must be a non-negative integer/],
    ['plugin_packages = "x"', /plugin_packages must be an array of strings/],
    ['[debug]\nlevel = "loud"', /log level "loud"/],
    ['root = ', /f\.toml: /],
  ];
  for (const [text, message] of bad) {
    assert.throws(() => parseConfig(text, 'f.toml'), { name: 'InvalidArgumentError', message }, text);
  }
});

test('loadConfig: --config must exist; without it a missing default file means defaults', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
  try {
    await assert.rejects(loadConfig({ config: join(dir, 'none.toml') }), /cannot read config/);
    writeFileSync(join(dir, 'c.toml'), `root = "${dir}/root"\n`);
    assert.equal((await loadConfig({ config: join(dir, 'c.toml') })).root, `${dir}/root`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
