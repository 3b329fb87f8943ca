import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { definePlugin, PLUGIN_API_VERSION, PluginType } from './plugin.js';
import { token } from './token.js';

test('PLUGIN_API_VERSION is the version in package.json', async () => {
  const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
    name: string;
    version: string;
  };
  assert.equal(manifest.name, '@berth/plugin-api');
  assert.equal(PLUGIN_API_VERSION, manifest.version);
});

test('definePlugin stamps the API version and freezes the definition', () => {
  const Thing = token<string>('test.Thing');
  const def = definePlugin({ type: PluginType.Internal, id: 'thing', provides: Thing, init: () => 'value' });
  assert.equal(def.apiVersion, PLUGIN_API_VERSION);
  assert.equal(def.type, 'io.containerd.internal.v1');
  assert.equal(def.id, 'thing');
  assert.equal(def.provides, Thing);
  assert.ok(Object.isFrozen(def));
  // A spec cannot override the stamped version.
  const forged = definePlugin({ type: 't', id: 'i', init: () => {}, apiVersion: '9.9.9' } as never);
  assert.equal((forged as { apiVersion: string }).apiVersion, PLUGIN_API_VERSION);
});

test('plugin types are containerd\'s type strings', () => {
  assert.equal(PluginType.Grpc, 'io.containerd.grpc.v1');
  assert.equal(PluginType.Snapshotter, 'io.containerd.snapshotter.v1');
  assert.equal(PluginType.Metadata, 'io.containerd.metadata.v1');
  assert.equal(PluginType.Event, 'io.containerd.event.v1');
  assert.equal(PluginType.Service, 'io.containerd.service.v1');
});
