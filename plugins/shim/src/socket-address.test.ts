import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFlags } from './flags.js';
import { parseStdioUri } from './process-io.js';
import { groupOfSpec, SHIM_SOCKET_DIR, shimLockPath, shimSocketPath } from './socket-address.js';

test('socket path: one per daemon address, namespace and group, well under sun_path', () => {
  const a = shimSocketPath({ address: '/run/containerd/containerd.sock', namespace: 'default', group: '' });
  assert.match(a, /^\/run\/berth\/s\/[0-9a-f]{64}$/);
  assert.ok(Buffer.byteLength(a) + Buffer.byteLength('.lock') < 108);
  assert.equal(a, shimSocketPath({ address: '/run/containerd/containerd.sock', namespace: 'default', group: '' }));
  const others = [
    { address: '/run/berthd/berthd.sock', namespace: 'default', group: '' },
    { address: '/run/containerd/containerd.sock', namespace: 'k8s.io', group: '' },
    { address: '/run/containerd/containerd.sock', namespace: 'default', group: 'pod-1' },
    // No ambiguity from separators inside the parts.
    { address: '/run/containerd/containerd.sock/default', namespace: '', group: '' },
  ];
  assert.equal(new Set([a, ...others.map((g) => shimSocketPath(g))]).size, 5);
  assert.equal(shimLockPath(a), `${a}.lock`);
  assert.ok(a.startsWith(`${SHIM_SOCKET_DIR}/`));
});

test('group: the runc v2 group annotation, then the CRI sandbox id, else the namespace default', () => {
  assert.equal(groupOfSpec({}), '');
  assert.equal(groupOfSpec(null), '');
  assert.equal(groupOfSpec({ annotations: { 'io.containerd.runc.v2.group': 'g1', 'io.kubernetes.cri.sandbox-id': 's' } }), 'g1');
  assert.equal(groupOfSpec({ annotations: { 'io.kubernetes.cri.sandbox-id': 's' } }), 's');
  assert.equal(groupOfSpec({ annotations: { 'io.containerd.runc.v2.group': '' } }), '');
});

test("flags in Go's syntax, as containerd passes them", () => {
  const f = parseFlags(['-namespace', 'ns', '-address', '/a.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'x', '-debug', 'start']);
  assert.equal(f.namespace, 'ns');
  assert.equal(f.address, '/a.sock');
  assert.equal(f.publishBinary, '/usr/bin/containerd');
  assert.equal(f.id, 'x');
  assert.equal(f.debug, true);
  assert.equal(f.command, 'start');
  const d = parseFlags(['--namespace=ns', '-id', 'x', '-bundle', '/b', 'delete']);
  assert.deepEqual([d.namespace, d.bundle, d.command, d.debug], ['ns', '/b', 'delete', false]);
  assert.equal(parseFlags(['-v']).version, true);
  assert.throws(() => parseFlags(['-nope', 'x']), /flag provided but not defined: -nope/);
  assert.throws(() => parseFlags(['-id']), /flag needs an argument/);
});

test('stdio URIs: plain FIFO paths, fifo:// and file://; binary:// is refused', () => {
  assert.deepEqual(parseStdioUri('/run/containerd/fifo/1/x-stdout'), { scheme: 'fifo', path: '/run/containerd/fifo/1/x-stdout' });
  assert.deepEqual(parseStdioUri('fifo:///run/f'), { scheme: 'fifo', path: '/run/f' });
  assert.deepEqual(parseStdioUri('file:///var/log/a%20b.log'), { scheme: 'file', path: '/var/log/a b.log' });
  assert.throws(() => parseStdioUri('binary:///usr/bin/logger?x=1'), /not supported/);
});
