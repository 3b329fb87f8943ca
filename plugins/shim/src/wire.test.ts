import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeRuncOptions, DEFAULT_RUNC_OPTIONS, runcOptionsFromAnyBytes, UnsupportedOptionsError } from './runc-options.js';
import { shimProtoRoot } from './shim-proto.js';
import { decodeAny, encodeDeleteResponse, readFields, WireWriter } from './wire.js';

const root = shimProtoRoot();

test('DeleteResponse bytes decode with the real shim.proto', () => {
  const at = new Date('2026-01-02T03:04:05.678Z');
  const bytes = encodeDeleteResponse({ pid: 4242, exitStatus: 137, exitedAt: at });
  const decoded = root.lookupType('containerd.task.v2.DeleteResponse').toObject(
    root.lookupType('containerd.task.v2.DeleteResponse').decode(bytes),
    { longs: Number },
  );
  assert.deepEqual(decoded, { pid: 4242, exitStatus: 137, exitedAt: { seconds: Math.floor(at.getTime() / 1000), nanos: 678_000_000 } });
});

test('runc Options from an Any as containerd sends it on start stdin', () => {
  const Options = root.lookupType('containerd.runc.v1.Options');
  const value = Options.encode(
    Options.fromObject({
      noPivotRoot: true,
      noNewKeyring: true,
      shimCgroup: '/berth-shims',
      ioUid: 1000,
      ioGid: 1001,
      binaryName: 'crun',
      root: '/run/other',
      systemdCgroup: true,
      criuPath: '/ignored',
    }),
  ).finish();
  const any = new WireWriter().bytes(1, 'containerd.runc.v1.Options').bytes(2, value).finish();
  assert.deepEqual(runcOptionsFromAnyBytes(any), {
    noPivotRoot: true,
    noNewKeyring: true,
    shimCgroup: '/berth-shims',
    ioUid: 1000,
    ioGid: 1001,
    binaryName: 'crun',
    root: '/run/other',
    systemdCgroup: true,
  });
  assert.deepEqual(decodeRuncOptions(new Uint8Array()), DEFAULT_RUNC_OPTIONS);
  assert.deepEqual(runcOptionsFromAnyBytes(Buffer.alloc(0)), DEFAULT_RUNC_OPTIONS);
  // An empty Options message still has its type URL: defaults.
  assert.deepEqual(runcOptionsFromAnyBytes(new WireWriter().bytes(1, 'containerd.runc.v1.Options').finish()), DEFAULT_RUNC_OPTIONS);
  assert.throws(
    () => runcOptionsFromAnyBytes(new WireWriter().bytes(1, 'runtimeoptions.v1.Options').bytes(2, 'x').finish()),
    (err: Error) => err instanceof UnsupportedOptionsError && /runtimeoptions\.v1\.Options/.test(err.message),
  );
});

test('WireWriter and readFields agree with protobufjs on varints, strings and nesting', () => {
  const ConnectResponse = root.lookupType('containerd.task.v2.ConnectResponse');
  const ours = new WireWriter().varint(1, 4_000_000_000).varint(2, 7).bytes(3, 'v1').finish();
  assert.deepEqual(ConnectResponse.toObject(ConnectResponse.decode(ours), { longs: Number }), { shimPid: 4_000_000_000, taskPid: 7, version: 'v1' });
  const theirs = ConnectResponse.encode(ConnectResponse.fromObject({ shimPid: 12, taskPid: 0, version: 'x' })).finish();
  const fields = readFields(theirs);
  assert.equal(fields.get(1)?.[0], 12n);
  assert.equal(fields.has(2), false, 'proto3 defaults are not sent');
  assert.deepEqual(decodeAny(new WireWriter().bytes(1, 't').bytes(2, Buffer.from([1, 2])).finish()), { typeUrl: 't', value: Buffer.from([1, 2]) });
  assert.throws(() => readFields(Buffer.from([0x0a, 0x05, 0x01])), /truncated/);
});
