import { InvalidArgumentError, UnknownError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BERTH_SHIM, RuntimeResolver, shimBinaryName } from './runtime-resolver.js';

let dir = '';

function executable(path: string, mode = 0o755): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, mode);
  return path;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-resolver-'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

const unknown = (message: string) => (err: unknown) => err instanceof UnknownError && err.message === message;

test("shimBinaryName: containerd's rule, the last two dot-separated parts", () => {
  assert.equal(shimBinaryName('io.containerd.runc.v2'), 'containerd-shim-runc-v2');
  assert.equal(shimBinaryName('io.containerd.berth.v1'), 'containerd-shim-berth-v1');
  assert.equal(shimBinaryName('runc.v1'), 'containerd-shim-runc-v1');
  assert.equal(shimBinaryName('containerd-shim-foo-v9'), 'containerd-shim-foo-v9');
  assert.equal(shimBinaryName('runc'), '');
});

describe('RuntimeResolver', () => {
  let path: string;
  let install: string;

  before(() => {
    path = join(dir, 'path');
    install = join(dir, 'install', 'node_modules', '@berth', 'runtime-v2', 'dist');
    mkdirSync(install, { recursive: true });
    executable(join(path, 'containerd-shim-runc-v2'));
    executable(join(path, 'containerd-shim-other-v1'));
    executable(join(path, 'containerd-shim-noexec-v1'), 0o644);
  });

  const resolver = (opts: ConstructorParameters<typeof RuntimeResolver>[0] = {}) =>
    new RuntimeResolver({ path: () => [join(dir, 'missing'), path], installDir: install, ...opts });

  test('a name resolves on the search path', () => {
    assert.equal(resolver().resolve('io.containerd.other.v1'), join(path, 'containerd-shim-other-v1'));
    assert.equal(resolver().resolve('io.containerd.runc.v2'), join(path, 'containerd-shim-runc-v2'));
  });

  test('an unknown runtime names the missing binary (containerd: Unknown)', () => {
    assert.throws(
      () => resolver().resolve('io.containerd.nope.v1'),
      unknown('runtime "io.containerd.nope.v1" binary not installed "containerd-shim-nope-v1": file does not exist'),
    );
    assert.throws(() => resolver().resolve('io.containerd.noexec.v1'), /binary not installed "containerd-shim-noexec-v1"/);
    assert.throws(() => resolver().resolve('runc'), unknown('invalid runtime name runc, correct runtime name should be either format like `io.containerd.runc.v1` or a full path to the binary'));
    assert.throws(() => resolver().resolve(''), InvalidArgumentError);
  });

  test('an absolute path is used as is when it is an executable', () => {
    const shim = join(path, 'containerd-shim-other-v1');
    assert.equal(resolver().resolve(shim), shim);
    assert.throws(() => resolver().resolve(join(dir, 'nope')), unknown(`invalid custom binary path: stat ${join(dir, 'nope')}: no such file or directory`));
    assert.throws(() => resolver().resolve(join(path, 'containerd-shim-noexec-v1')), /is not an executable file/);
  });

  test("io.containerd.runc.v2 runs berth's shim when it is installed, else the stock one", () => {
    assert.equal(resolver().resolve('io.containerd.runc.v2'), join(path, 'containerd-shim-runc-v2'));
    const berth = executable(join(dir, 'install', 'node_modules', '.bin', BERTH_SHIM));
    try {
      assert.equal(resolver().resolve('io.containerd.runc.v2'), berth, "berth's own node_modules/.bin, up the tree");
      assert.equal(resolver().resolve('io.containerd.berth.v1'), berth);
      assert.equal(resolver().resolve('io.containerd.other.v1'), join(path, 'containerd-shim-other-v1'));
      // The config points it back at the stock shim, by name or path.
      const runtimes = { 'io.containerd.runc.v2': { binary: 'containerd-shim-runc-v2' } };
      assert.equal(resolver({ runtimes }).resolve('io.containerd.runc.v2'), join(path, 'containerd-shim-runc-v2'));
      const stock = join(path, 'containerd-shim-runc-v2');
      assert.equal(resolver({ runtimes: { 'io.containerd.runc.v2': { binary: stock } } }).resolve('io.containerd.runc.v2'), stock);
      assert.throws(() => resolver({ runtimes: { x: { binary: join(dir, 'gone') } } }).resolve('x'), /invalid custom binary path/);
    } finally {
      rmSync(berth);
    }
  });

  test('the runtimes table maps any name; an entry without a binary keeps the naming rule', () => {
    const runtimes = {
      fast: { binary: 'containerd-shim-other-v1' },
      'io.containerd.runc.v2': { binary: '' },
      broken: { binary: 'containerd-shim-gone-v1' },
    };
    assert.equal(resolver({ runtimes }).resolve('fast'), join(path, 'containerd-shim-other-v1'));
    assert.equal(resolver({ runtimes }).resolve('io.containerd.runc.v2'), join(path, 'containerd-shim-runc-v2'));
    assert.throws(() => resolver({ runtimes }).resolve('broken'), unknown('runtime "broken" binary not installed "containerd-shim-gone-v1": file does not exist'));
    assert.throws(() => resolver({ runtimes }).resolve('toString'), /invalid runtime name toString/, 'only own keys of the table');
  });

  test("the workspace's package bins resolve when no node_modules/.bin links them", () => {
    const root = join(dir, 'workspace');
    writeFileSync(join(mkdirp(root), 'package.json'), JSON.stringify({ name: 'ws', workspaces: ['plugins/*'] }));
    const shimDir = mkdirp(join(root, 'plugins', 'shim'));
    writeFileSync(join(shimDir, 'package.json'), JSON.stringify({ name: '@berth/shim', bin: { [BERTH_SHIM]: 'dist/main.js' } }));
    const main = executable(join(shimDir, 'dist', 'main.js'));
    const inWorkspace = mkdirp(join(root, 'plugins', 'runtime-v2', 'dist'));
    const r = new RuntimeResolver({ path: () => [path], installDir: inWorkspace });
    assert.equal(r.resolve('io.containerd.runc.v2'), main);
    assert.equal(r.lookup('containerd-shim-unknown-v1'), undefined);
  });
});

function mkdirp(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}
