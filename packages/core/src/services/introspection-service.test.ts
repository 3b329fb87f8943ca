import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { InvalidArgumentError, type PluginInfo, type PluginRegistryView } from '@berth/plugin-api';
import { IntrospectionService } from './introspection-service.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let dir: string;
let n = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'berth-introspection-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const freshRoot = () => join(dir, `root${++n}`, 'io.containerd.service.v1.introspection-service');

const pluginInfo = (type: string, id: string, extra: Partial<PluginInfo> = {}): PluginInfo => ({
  type,
  id,
  requires: [],
  platforms: [],
  exports: {},
  capabilities: [],
  status: { state: 'ok' },
  ...extra,
});

const plugins: PluginInfo[] = [
  pluginInfo('io.containerd.content.v1', 'content'),
  pluginInfo('io.containerd.snapshotter.v1', 'overlayfs', { capabilities: ['remap-ids'] }),
  pluginInfo('io.containerd.snapshotter.v1', 'native'),
  pluginInfo('io.containerd.grpc.v1', 'content'),
  pluginInfo('io.containerd.service.v1', 'namespaces-service'),
];
const view: PluginRegistryView = { list: () => plugins };

const names = (list: PluginInfo[]) => list.map((p) => `${p.type}.${p.id}`);

test('plugins without filters lists everything the registry lists', () => {
  const service = new IntrospectionService(view, freshRoot());
  assert.deepEqual(service.plugins([]), plugins);
});

test('plugins filters by type and id', () => {
  const service = new IntrospectionService(view, freshRoot());
  assert.deepEqual(names(service.plugins(['type==io.containerd.snapshotter.v1'])), [
    'io.containerd.snapshotter.v1.overlayfs',
    'io.containerd.snapshotter.v1.native',
  ]);
  assert.deepEqual(names(service.plugins(['id==content'])), ['io.containerd.content.v1.content', 'io.containerd.grpc.v1.content']);
  assert.deepEqual(names(service.plugins(['type==io.containerd.grpc.v1,id==content'])), ['io.containerd.grpc.v1.content']);
  assert.deepEqual(names(service.plugins(['id==native', 'type~=service'])), [
    'io.containerd.snapshotter.v1.native',
    'io.containerd.service.v1.namespaces-service',
  ]);
  assert.deepEqual(names(service.plugins(['id!=content,type~="snapshotter"'])), [
    'io.containerd.snapshotter.v1.overlayfs',
    'io.containerd.snapshotter.v1.native',
  ]);
  assert.deepEqual(service.plugins(['id==nothing']), []);
  // As in containerd, other fields are not filterable.
  assert.deepEqual(service.plugins(['capabilities==remap-ids']), []);
  assert.deepEqual(service.plugins(['status']), []);
});

test('plugins refuses an invalid filter', () => {
  const service = new IntrospectionService(view, freshRoot());
  assert.throws(() => service.plugins(['type==']), InvalidArgumentError);
});

test('plugins reflects the registry at the time of the call', () => {
  const live: PluginInfo[] = [];
  const service = new IntrospectionService({ list: () => live }, freshRoot());
  assert.deepEqual(service.plugins([]), []);
  live.push(pluginInfo('io.berth.package.v1', 'broken', { status: { state: 'error', message: 'x' } }));
  assert.deepEqual(names(service.plugins([])), ['io.berth.package.v1.broken']);
});

test('server reports a uuid that survives restarts', async () => {
  const root = freshRoot();
  const first = await new IntrospectionService(view, root).server();
  assert.match(first.uuid, UUID);
  assert.equal((await readFile(join(root, 'uuid'), 'utf8')).trim(), first.uuid);
  const again = new IntrospectionService(view, root);
  assert.equal((await again.server()).uuid, first.uuid);
  assert.equal((await again.server()).uuid, first.uuid);
  // Another root is another server.
  assert.notEqual((await new IntrospectionService(view, freshRoot()).server()).uuid, first.uuid);
});

test('server keeps a uuid file written with a trailing newline', async () => {
  const root = freshRoot();
  await mkdir(root, { recursive: true });
  const uuid = '0f6b3c3e-52a4-4c43-9a57-1f3b2f5d9c11';
  await writeFile(join(root, 'uuid'), `${uuid}\n`);
  assert.equal((await new IntrospectionService(view, root).server()).uuid, uuid);
});

test('server replaces a corrupt uuid file', async () => {
  const root = freshRoot();
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'uuid'), 'not-a-uuid\u0000garbage');
  const { uuid } = await new IntrospectionService(view, root).server();
  assert.match(uuid, UUID);
  assert.equal(await readFile(join(root, 'uuid'), 'utf8'), uuid);
  assert.equal((await new IntrospectionService(view, root).server()).uuid, uuid);
});

test('server reports this process and its pid namespace', async () => {
  const info = await new IntrospectionService(view, freshRoot()).server();
  assert.equal(info.pid, process.pid);
  let expected = 0;
  try {
    expected = Number(/\[(\d+)\]/.exec(await readlink('/proc/self/ns/pid'))?.[1]);
  } catch {
    // Not Linux: reported as 0.
  }
  assert.equal(info.pidns, expected);
  if (process.platform === 'linux') assert.ok(info.pidns > 0);
});
