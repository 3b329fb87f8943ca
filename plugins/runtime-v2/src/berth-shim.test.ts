import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BERTH_SHIM_SOCKET_DIR, berthShimSocket, groupOfSpec } from './berth-shim.js';

test('the group comes from the first grouping annotation, else the namespace default', () => {
  assert.equal(groupOfSpec({}), '');
  assert.equal(groupOfSpec(null), '');
  assert.equal(groupOfSpec({ annotations: { 'io.kubernetes.cri.sandbox-id': 'sb' } }), 'sb');
  assert.equal(groupOfSpec({ annotations: { 'io.kubernetes.cri.sandbox-id': 'sb', 'io.containerd.runc.v2.group': 'g' } }), 'g');
  assert.equal(groupOfSpec({ annotations: { 'io.containerd.runc.v2.group': '' } }), '');
});

test('the socket of a group: short, per daemon address, namespace and group', () => {
  const a = berthShimSocket('/run/berth/berthd.sock', 'default', '');
  assert.match(a, /^\/run\/berth\/s\/[0-9a-f]{64}$/);
  assert.equal(a.startsWith(BERTH_SHIM_SOCKET_DIR), true);
  assert.notEqual(berthShimSocket('/run/berth/berthd.sock', 'other', ''), a);
  assert.notEqual(berthShimSocket('/run/berth/berthd.sock', 'default', 'g'), a);
  assert.notEqual(berthShimSocket('/tmp/x.sock', 'default', ''), a);
});

const shimModule = fileURLToPath(new URL('../../shim/dist/socket-address.js', import.meta.url));

test("berthd and berth's shim compute the same socket and group", { skip: existsSync(shimModule) ? false : 'plugins/shim is not built' }, async () => {
  const shim = (await import(shimModule)) as {
    shimSocketPath(g: { address: string; namespace: string; group: string }): string;
    groupOfSpec(spec: unknown): string;
    SHIM_SOCKET_DIR: string;
  };
  assert.equal(shim.SHIM_SOCKET_DIR, BERTH_SHIM_SOCKET_DIR);
  for (const [address, namespace, group] of [
    ['/run/berth/berthd.sock', 'default', ''],
    ['/tmp/b x/berthd.sock', 'k8s.io', 'sandbox-1'],
  ] as const) {
    assert.equal(berthShimSocket(address, namespace, group), shim.shimSocketPath({ address, namespace, group }));
  }
  const spec = { annotations: { 'io.kubernetes.cri.sandbox-id': 'sb', 'io.containerd.runc.v2.group': 'g' } };
  assert.equal(groupOfSpec(spec), shim.groupOfSpec(spec));
});
