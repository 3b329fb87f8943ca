import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { PLUGIN_API_VERSION } from '@berth/plugin-api';
import { silentLogger } from './logger.js';
import { loadPluginPackage, registerPackages } from './plugin-loader.js';
import { PluginRegistry } from './registry.js';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-plugin-loader-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Fixture {
  /** Folder under the temp dir, e.g. `node_modules/@acme/hello` or `local/hello`. */
  readonly at: string;
  readonly manifest: Record<string, unknown>;
  readonly files: Record<string, string>;
}

async function fixture(f: Fixture): Promise<string> {
  const root = join(dir, f.at);
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'package.json'), JSON.stringify({ type: 'module', ...f.manifest }));
  for (const [name, text] of Object.entries(f.files)) await writeFile(join(root, name), text);
  return root;
}

/** Source of a module default-exporting plugin definitions (object literals: no @berth/plugin-api import). */
function definitions(...ids: string[]): string {
  const defs = ids.map(
    (id) => `{ type: 'io.berth.fixture.v1', id: ${JSON.stringify(id)}, apiVersion: '0.1.0', init() { return ${JSON.stringify(id)}; } }`,
  );
  return `export default ${ids.length === 1 ? defs[0] : `[${defs.join(', ')}]`};\n`;
}

function manifest(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, version: '1.0.0', berth: { plugin: './index.js' }, peerDependencies: { '@berth/plugin-api': '^0.1.0' }, ...extra };
}

test('loads a package by absolute and by relative path', async () => {
  const root = await fixture({ at: 'local/hello', manifest: manifest('berth-plugin-hello'), files: { 'index.js': definitions('hello') } });
  const loaded = await loadPluginPackage(root, [dir]);
  assert.equal(loaded.name, 'berth-plugin-hello');
  assert.equal(loaded.definitions.length, 1);
  assert.equal(loaded.definitions[0]?.id, 'hello');
  assert.equal(loaded.definitions[0]?.init({} as never), 'hello');

  const again = await loadPluginPackage(`./${relative(dir, root)}`, [dir]);
  assert.equal(again.definitions[0]?.id, 'hello');
});

test('loads a package by name from node_modules', async () => {
  await fixture({
    at: 'app/node_modules/@acme/berth-plugin-named',
    manifest: manifest('@acme/berth-plugin-named', { exports: { '.': './index.js' } }),
    files: { 'index.js': definitions('named') },
  });
  // Resolution walks up from a nested folder, as Node's does; the first folder that fails is skipped.
  const nested = join(dir, 'app', 'src', 'deep');
  await mkdir(nested, { recursive: true });
  const loaded = await loadPluginPackage('@acme/berth-plugin-named', [join(dir, 'elsewhere'), nested]);
  assert.equal(loaded.name, '@acme/berth-plugin-named');
  assert.deepEqual(loaded.definitions.map((d) => d.id), ['named']);
});

test('a package not found names the package', async () => {
  await assert.rejects(loadPluginPackage('berth-plugin-nowhere', [dir]), /berth-plugin-nowhere not found/);
});

test('an array default export gives every definition', async () => {
  const root = await fixture({ at: 'local/many', manifest: manifest('berth-plugin-many'), files: { 'index.js': definitions('one', 'two', 'three') } });
  const loaded = await loadPluginPackage(root, [dir]);
  assert.deepEqual(loaded.definitions.map((d) => d.id), ['one', 'two', 'three']);
});

test('berth.plugin may name a module in a subfolder; a range in dependencies counts', async () => {
  const root = await fixture({
    at: 'local/sub',
    manifest: {
      name: 'berth-plugin-sub',
      berth: { plugin: './lib/plugin.js' },
      dependencies: { '@berth/plugin-api': `>=${PLUGIN_API_VERSION}` },
    },
    files: {},
  });
  await mkdir(join(root, 'lib'));
  await writeFile(join(root, 'lib', 'plugin.js'), definitions('sub'));
  const loaded = await loadPluginPackage(root, [dir]);
  assert.deepEqual(loaded.definitions.map((d) => d.id), ['sub']);
});

test('an incompatible @berth/plugin-api range is refused with the range and the version provided', async () => {
  const root = await fixture({
    at: 'local/future',
    manifest: manifest('berth-plugin-future', { peerDependencies: { '@berth/plugin-api': '^2.0.0' } }),
    // Importing it would throw: the range check must come first.
    files: { 'index.js': "throw new Error('imported although incompatible');\n" },
  });
  await assert.rejects(loadPluginPackage(root, [dir]), (err: Error) => {
    assert.match(err.message, /berth-plugin-future/);
    assert.ok(err.message.includes('^2.0.0'), err.message);
    assert.ok(err.message.includes(PLUGIN_API_VERSION), err.message);
    return true;
  });
});

test('a package without berth.plugin is refused', async () => {
  const root = await fixture({
    at: 'local/no-entry',
    manifest: { name: 'not-a-plugin', peerDependencies: { '@berth/plugin-api': '^0.1.0' } },
    files: { 'index.js': definitions('x') },
  });
  await assert.rejects(loadPluginPackage(root, [dir]), /not-a-plugin has no "berth\.plugin" entry/);
});

test('a package without a @berth/plugin-api range is refused', async () => {
  const root = await fixture({
    at: 'local/no-range',
    manifest: { name: 'berth-plugin-no-range', berth: { plugin: './index.js' } },
    files: { 'index.js': definitions('x') },
  });
  await assert.rejects(loadPluginPackage(root, [dir]), /berth-plugin-no-range does not declare @berth\/plugin-api/);
});

test('a module that throws on import rejects with its error', async () => {
  const root = await fixture({
    at: 'local/throws',
    manifest: manifest('berth-plugin-throws'),
    files: { 'index.js': "throw new Error('top-level failure');\n" },
  });
  await assert.rejects(loadPluginPackage(root, [dir]), /top-level failure/);
});

test('a module without a default export is refused', async () => {
  const root = await fixture({
    at: 'local/no-default',
    manifest: manifest('berth-plugin-no-default'),
    files: { 'index.js': "export const plugin = { type: 't', id: 'i' };\n" },
  });
  await assert.rejects(loadPluginPackage(root, [dir]), /berth-plugin-no-default: \.\/index\.js has no default export/);
});

test('registerPackages records packages that fail and registers the rest', async () => {
  const good = await fixture({ at: 'reg/good', manifest: manifest('berth-plugin-good'), files: { 'index.js': definitions('good-a', 'good-b') } });
  const bad = await fixture({
    at: 'reg/bad',
    manifest: manifest('berth-plugin-bad', { peerDependencies: { '@berth/plugin-api': '^9.0.0' } }),
    files: { 'index.js': definitions('bad') },
  });
  const half = await fixture({
    at: 'reg/half',
    manifest: manifest('berth-plugin-half'),
    files: {
      'index.js':
        "export default [{ type: 'io.berth.fixture.v1', id: '', apiVersion: '0.1.0', init() {} }, " +
        "{ type: 'io.berth.fixture.v1', id: 'half-ok', apiVersion: '0.1.0', init() {} }];\n",
    },
  });
  const registry = new PluginRegistry({ root: join(dir, 'root'), state: join(dir, 'state'), log: silentLogger });
  await registerPackages(registry, [bad, 'berth-plugin-missing', good, half], [dir]);
  await registry.initAll();

  const list = registry.list();
  const failures = list.filter((p) => p.type === 'io.berth.package.v1');
  assert.deepEqual(failures.map((p) => p.id), [bad, 'berth-plugin-missing', 'berth-plugin-half#']);
  for (const f of failures) assert.equal(f.status.state, 'error', f.id);
  const message = (id: string) => {
    const s = failures.find((p) => p.id === id)?.status;
    return s?.state === 'error' ? s.message : '';
  };
  assert.match(message(bad), /\^9\.0\.0/);
  assert.match(message('berth-plugin-missing'), /not found/);
  assert.match(message('berth-plugin-half#'), /empty id/);

  const loaded = list.filter((p) => p.type === 'io.berth.fixture.v1');
  assert.deepEqual(loaded.map((p) => [p.id, p.package, p.status.state]), [
    ['good-a', 'berth-plugin-good', 'ok'],
    ['good-b', 'berth-plugin-good', 'ok'],
    ['half-ok', 'berth-plugin-half', 'ok'],
  ]);
});
