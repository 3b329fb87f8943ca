import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  EventExchange,
  Introspection,
  MetadataStore,
  NamespacesService,
  type PluginRegistryView,
  PluginRegistryView as RegistryViewToken,
} from '@berth/plugin-api';
import { silentLogger } from './logger.js';
import builtins, { exchangePlugin, introspectionServicePlugin, metadataPlugin, namespacesServicePlugin } from './plugins.js';
import { PluginRegistry } from './registry.js';

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-core-plugins-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The plugins of this file; the default export may hold more, some needing plugins from other packages.
const core = [exchangePlugin, metadataPlugin, namespacesServicePlugin, introspectionServicePlugin];

test('every built-in definition registers, the core ones included', () => {
  const registry = new PluginRegistry({ root: join(dir, 'unused'), state: join(dir, 'unused'), log: silentLogger });
  for (const def of builtins) registry.register(def, '@berth/core');
  for (const def of core) assert.ok(builtins.includes(def), def.id);
});

test('the core plugins boot together and serve', async () => {
  const registry = new PluginRegistry({ root: join(dir, 'root'), state: join(dir, 'state'), log: silentLogger });
  registry.preset<PluginRegistryView>(RegistryViewToken, registry);
  for (const def of core) registry.register(def, '@berth/core');
  await registry.initAll();
  try {
    for (const p of registry.list()) assert.deepEqual(p.status, { state: 'ok' }, `${p.type}.${p.id}`);
    assert.deepEqual(
      registry.list().map((p) => `${p.type}.${p.id}`),
      [
        'io.containerd.event.v1.exchange',
        'io.containerd.metadata.v1.level',
        'io.containerd.service.v1.namespaces-service',
        'io.containerd.service.v1.introspection-service',
      ],
    );
    const dbPath = join(dir, 'root', 'io.containerd.metadata.v1.level', 'meta.level');
    const level = registry.list().find((p) => p.id === 'level');
    assert.deepEqual(level?.exports, { path: dbPath });
    assert.ok((await stat(join(dbPath, 'CURRENT'))).isFile());
    const ns = registry.list().find((p) => p.id === 'namespaces-service');
    assert.deepEqual(ns?.requires, ['io.containerd.metadata.v1', 'io.containerd.event.v1']);

    const namespaces = registry.lookup(NamespacesService);
    const events = registry.lookup(EventExchange);
    assert.ok(namespaces && events && registry.lookup(MetadataStore));
    const abort = new AbortController();
    const topics: string[] = [];
    const consumer = (async () => {
      for await (const env of events.subscribe([], abort.signal)) topics.push(env.topic);
    })();
    await namespaces.create({ namespace: 'default' }, { name: 'default', labels: {} });
    assert.deepEqual(await namespaces.list({}), [{ name: 'default', labels: {} }]);
    await new Promise((resolve) => setImmediate(resolve));
    abort.abort();
    await consumer;
    assert.deepEqual(topics, ['/namespaces/create']);

    const introspection = registry.lookup(Introspection);
    assert.deepEqual(
      introspection?.plugins(['type==io.containerd.service.v1']).map((p) => p.id),
      ['namespaces-service', 'introspection-service'],
    );
    assert.equal((await introspection?.server())?.pid, process.pid);
  } finally {
    await registry.close();
  }
  // close() closed the database: it opens again.
  const again = new PluginRegistry({ root: join(dir, 'root'), state: join(dir, 'state'), log: silentLogger });
  again.preset<PluginRegistryView>(RegistryViewToken, again);
  for (const def of core) again.register(def, '@berth/core');
  await again.initAll();
  try {
    assert.deepEqual(await again.lookup(NamespacesService)?.list({}), [{ name: 'default', labels: {} }]);
  } finally {
    await again.close();
  }
});
