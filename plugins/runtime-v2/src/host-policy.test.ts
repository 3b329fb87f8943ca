import { InvalidArgumentError, type OciSpec, type SpecModifierInput } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HostPolicyModifier } from './host-policy.js';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-policy-'));
  mkdirSync(join(dir, 'allowed', 'data'), { recursive: true });
  mkdirSync(join(dir, 'secret'));
  symlinkSync(join(dir, 'secret'), join(dir, 'allowed', 'escape'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const ctx = { namespace: 'ns' };
const input = (rootfs: SpecModifierInput['rootfs'] = [{ type: 'overlay', source: 'overlay', options: [] }]): SpecModifierInput => ({
  namespace: 'ns',
  containerId: 'c1',
  labels: {},
  runtime: 'io.containerd.runc.v2',
  rootfs,
});
const bind = (source: string, destination = '/mnt', type = 'bind', options = ['rbind', 'ro']) => ({ type, source, destination, options });
const spec = (extra: Record<string, unknown> = {}): OciSpec => ({
  ociVersion: '1.0.2',
  root: { path: 'rootfs' },
  process: { capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL'], effective: ['CAP_CHOWN'] } },
  mounts: [{ type: 'proc', source: 'proc', destination: '/proc', options: [] }],
  ...extra,
});
const refused = (pattern: RegExp) => (err: unknown) => err instanceof InvalidArgumentError && pattern.test(err.message);

test('no policy configured: every spec passes unchanged', () => {
  const policy = new HostPolicyModifier({ allowedHostPaths: [], forbiddenCapabilities: [] });
  assert.equal(policy.enabled, false);
  const s = spec({ mounts: [bind('/etc')] });
  assert.equal(policy.modify(ctx, input(), s), s);
});

test('bind mounts only of allowed host paths, symlinks resolved', () => {
  const policy = new HostPolicyModifier({ allowedHostPaths: [join(dir, 'allowed')], forbiddenCapabilities: [] });
  assert.equal(policy.enabled, true);
  const ok = spec({ mounts: [bind(join(dir, 'allowed')), bind(join(dir, 'allowed', 'data', '..', 'data')), bind('/x', '/y', 'tmpfs', [])] });
  assert.equal(policy.modify(ctx, input(), ok), ok);
  assert.throws(
    () => policy.modify(ctx, input(), spec({ mounts: [bind('/etc', '/host-etc')] })),
    refused(/^container "c1": host path \/etc for the bind mount on \/host-etc is not allowed by berthd's configuration \(plugins\."io\.containerd\.runtime\.v2\.task"\.allowed_host_paths: /),
  );
  assert.throws(() => policy.modify(ctx, input(), spec({ mounts: [bind(join(dir, 'allowed', '..', 'secret'))] })), refused(/secret/));
  assert.throws(() => policy.modify(ctx, input(), spec({ mounts: [bind(join(dir, 'allowed', 'escape'))] })), refused(/escape \(.*secret\)/));
  assert.throws(() => policy.modify(ctx, input(), spec({ mounts: [bind(join(dir, 'allowedx'))] })), refused(/allowedx/));
  // A bind by option only counts too; relative sources cannot be judged.
  assert.throws(() => policy.modify(ctx, input(), spec({ mounts: [bind('/etc', '/e', 'none', ['rbind'])] })), refused(/\/etc/));
  assert.throws(() => policy.modify(ctx, input(), spec({ mounts: [bind('etc', '/e')] })), refused(/must be an absolute host path/));
});

test('a spec rooted in a host directory (no rootfs mounts) must be rooted in an allowed path', () => {
  const policy = new HostPolicyModifier({ allowedHostPaths: [join(dir, 'allowed')], forbiddenCapabilities: [] });
  assert.ok(policy.modify(ctx, input([]), spec({ root: { path: join(dir, 'allowed', 'data') } })));
  assert.throws(() => policy.modify(ctx, input([]), spec({ root: { path: '/' } })), refused(/host path \/ for the root is not allowed/));
  // With rootfs mounts the root is the bundle's rootfs, not a host path.
  assert.ok(policy.modify(ctx, input(), spec({ root: { path: '/' } })));
});

test('forbidden capabilities are refused in any set, for the task and for execs', () => {
  const policy = new HostPolicyModifier({ allowedHostPaths: [], forbiddenCapabilities: ['sys_admin', 'CAP_NET_ADMIN'] });
  assert.ok(policy.modify(ctx, input(), spec()));
  const privileged = spec({ process: { capabilities: { bounding: ['CAP_CHOWN'], permitted: ['CAP_SYS_ADMIN'] } } });
  assert.throws(
    () => policy.modify(ctx, input(), privileged),
    refused(/^container "c1": capability CAP_SYS_ADMIN \(permitted\) is forbidden by berthd's configuration \(plugins\."io\.containerd\.runtime\.v2\.task"\.forbidden_capabilities\)$/),
  );
  const exec = { args: ['sh'], capabilities: { ambient: ['NET_ADMIN'] } };
  assert.throws(() => policy.modifyExecProcess(ctx, { ...input(), execId: 'e1' }, exec), refused(/^exec "e1" in container "c1": capability CAP_NET_ADMIN \(ambient\)/));
  assert.ok(policy.modifyExecProcess(ctx, { ...input(), execId: 'e1' }, { args: ['sh'] }));
});
