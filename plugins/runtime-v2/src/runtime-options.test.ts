import { decodeMessage, encodeMessage, protoRoot } from '@berth/api';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeAny, encodeRuncOptions, mergeRuntimeOptions, RUNC_OPTIONS_TYPE } from './runtime-options.js';

const Options = () => protoRoot().lookupType(RUNC_OPTIONS_TYPE);
const decode = (bytes: Uint8Array) => decodeMessage<Record<string, unknown>>(Options(), bytes);

test('config options encode as containerd.runc.v1.Options; none set gives nothing', () => {
  assert.equal(encodeRuncOptions(undefined), undefined);
  assert.equal(encodeRuncOptions({ BinaryName: '', SystemdCgroup: false }), undefined);
  const bytes = encodeRuncOptions({ BinaryName: 'crun', SystemdCgroup: true, Root: '/run/x', IoUid: 5 });
  assert.ok(bytes);
  assert.deepEqual(
    { binaryName: decode(bytes).binaryName, systemdCgroup: decode(bytes).systemdCgroup, root: decode(bytes).root, ioUid: decode(bytes).ioUid },
    { binaryName: 'crun', systemdCgroup: true, root: '/run/x', ioUid: 5 },
  );
});

test('request options merge over the config as protobuf merges: set fields win, unset keep the config', () => {
  const configured = encodeRuncOptions({ BinaryName: 'crun', Root: '/run/x' });
  // `ctr run` sends an empty Options.
  const empty = mergeRuntimeOptions(configured, { typeUrl: RUNC_OPTIONS_TYPE, value: new Uint8Array() });
  assert.equal(empty?.typeUrl, RUNC_OPTIONS_TYPE);
  assert.equal(decode(empty?.value as Uint8Array).binaryName, 'crun');
  const requested = encodeMessage(Options(), { binaryName: 'runc', systemdCgroup: true });
  const merged = decode(mergeRuntimeOptions(configured, { typeUrl: RUNC_OPTIONS_TYPE, value: requested })?.value as Uint8Array);
  assert.deepEqual([merged.binaryName, merged.root, merged.systemdCgroup], ['runc', '/run/x', true]);
  // Nothing requested: the config's; nothing configured: the request's; another type: the request's as is.
  assert.equal(decode(mergeRuntimeOptions(configured, undefined)?.value as Uint8Array).root, '/run/x');
  const other = { typeUrl: 'io.berth.shim.v1.Options', value: new Uint8Array([1, 2]) };
  assert.equal(mergeRuntimeOptions(configured, other), other);
  assert.equal(mergeRuntimeOptions(undefined, other), other);
  assert.equal(mergeRuntimeOptions(undefined, undefined), undefined);
  assert.equal(mergeRuntimeOptions(undefined, { typeUrl: '', value: new Uint8Array() }), undefined);
});

test('options go to a shim on stdin as a google.protobuf.Any', () => {
  const bytes = encodeAny({ typeUrl: RUNC_OPTIONS_TYPE, value: new Uint8Array([0x32, 0x01, 0x78]) });
  const any = decodeMessage<{ type_url: string; value: Uint8Array }>(protoRoot().lookupType('google.protobuf.Any'), bytes);
  assert.equal(any.type_url, RUNC_OPTIONS_TYPE);
  assert.deepEqual([...any.value], [0x32, 0x01, 0x78]);
  assert.equal(decode(any.value).binaryName, 'x');
});
