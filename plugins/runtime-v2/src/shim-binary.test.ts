import { decodeMessage, encodeMessage, protoRoot } from '@berth/api';
import { DeadlineExceededError, UnknownError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RUNC_OPTIONS_TYPE } from './runtime-options.js';
import { deleteShim, type ShimCommand, startShim } from './shim-binary.js';

let dir = '';
let bundle = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-shim-binary-'));
  bundle = join(dir, 'bundle');
  mkdirSync(bundle);
});
after(() => rmSync(dir, { recursive: true, force: true }));

function fakeShim(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const command = (binary: string): ShimCommand => ({
  binary,
  namespace: 'ns1',
  id: 'c1',
  bundle,
  grpcAddress: '/run/berth/berthd.sock',
  ttrpcAddress: '/run/berth/berthd.sock.ttrpc',
  publishBinary: '/bin/true',
});

test('start: the protocol containerd speaks — args, cwd, TTRPC_ADDRESS, options on stdin, address out', async () => {
  const shim = fakeShim(
    'start-ok',
    `echo "$@" > "${dir}/args"; pwd > "${dir}/cwd"; echo "$TTRPC_ADDRESS" > "${dir}/env"; cat > "${dir}/stdin"
echo "unix:///run/containerd/s/abc"`,
  );
  const options = { typeUrl: RUNC_OPTIONS_TYPE, value: new Uint8Array([0x32, 0x04, 0x63, 0x72, 0x75, 0x6e]) };
  assert.equal(await startShim(command(shim), options, 5000), 'unix:///run/containerd/s/abc');
  assert.equal(
    readFileSync(join(dir, 'args'), 'utf8').trim(),
    '-namespace ns1 -address /run/berth/berthd.sock -publish-binary /bin/true -id c1 start',
  );
  assert.equal(readFileSync(join(dir, 'cwd'), 'utf8').trim(), bundle);
  assert.equal(readFileSync(join(dir, 'env'), 'utf8').trim(), '/run/berth/berthd.sock.ttrpc');
  const any = decodeMessage<{ type_url: string; value: Uint8Array }>(protoRoot().lookupType('google.protobuf.Any'), readFileSync(join(dir, 'stdin')));
  assert.equal(any.type_url, RUNC_OPTIONS_TYPE);
  assert.deepEqual([...any.value], [...options.value]);
  // No options: empty stdin.
  await startShim(command(shim), undefined, 5000);
  assert.equal(readFileSync(join(dir, 'stdin')).length, 0);
});

test('start: a failing shim reports its output and status; stderr counts as output, as in containerd', async () => {
  const shim = fakeShim('start-fail', 'echo "create new shim socket: boom" >&2; exit 3');
  await assert.rejects(startShim(command(shim), undefined, 5000), (err: Error) => {
    return err instanceof UnknownError && err.message === 'create new shim socket: boom: exit status 3';
  });
  const silent = fakeShim('start-silent', 'exit 0');
  await assert.rejects(startShim(command(silent), undefined, 5000), /printed no address/);
});

test('start: a shim whose daemon keeps the pipes open does not hang berthd', async () => {
  const shim = fakeShim('start-leaky', `sleep 30 & echo $! > "${dir}/leaked"; echo unix:///run/x.sock`);
  const t0 = Date.now();
  try {
    assert.equal(await startShim(command(shim), undefined, 10_000), 'unix:///run/x.sock');
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  } finally {
    process.kill(Number(readFileSync(join(dir, 'leaked'), 'utf8')), 'SIGKILL');
  }
});

test('start: a shim that never answers is killed at the deadline', async () => {
  const shim = fakeShim('start-stuck', `echo $$ > "${dir}/stuck"; exec sleep 30`);
  await assert.rejects(startShim(command(shim), undefined, 300), DeadlineExceededError);
  const pid = Number(readFileSync(join(dir, 'stuck'), 'utf8'));
  await new Promise((r) => setTimeout(r, 100));
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'killed');
});

test('delete: -bundle and delete in the bundle; the DeleteResponse on stdout, warnings on stderr', async () => {
  const response = encodeMessage(protoRoot().lookupType('containerd.task.v2.DeleteResponse'), {
    pid: 4242,
    exitStatus: 137,
    exitedAt: { seconds: 1_700_000_000, nanos: 5_000_000 },
  });
  writeFileSync(join(dir, 'delete-response'), response);
  const shim = fakeShim('delete-ok', `echo "$@" > "${dir}/delete-args"; echo "warning: runc gone" >&2; cat "${dir}/delete-response"`);
  const { exit, warnings } = await deleteShim(command(shim), 5000);
  assert.deepEqual(exit, { pid: 4242, exitStatus: 137, exitedAt: new Date(1_700_000_000_005) });
  assert.equal(warnings, 'warning: runc gone');
  assert.equal(
    readFileSync(join(dir, 'delete-args'), 'utf8').trim(),
    `-namespace ns1 -address /run/berth/berthd.sock -publish-binary /bin/true -id c1 -bundle ${bundle} delete`,
  );
  const failing = fakeShim('delete-fail', 'echo "no such container" >&2; exit 1');
  await assert.rejects(deleteShim(command(failing), 5000), /^UnknownError: no such container: exit status 1$/);
});
