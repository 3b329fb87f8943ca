import { PROTO_DIR } from '@berth/api';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import protobuf from 'protobufjs';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from './messages.js';

/** proto/ttrpc.proto is the reference for the hand-written codec. */
function referenceTypes() {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('google/protobuf/') || target.startsWith('/') ? target : join(PROTO_DIR, target));
  root.loadSync(fileURLToPath(new URL('../proto/ttrpc.proto', import.meta.url)));
  root.resolveAll();
  return { Request: root.lookupType('ttrpc.Request'), Response: root.lookupType('ttrpc.Response') };
}

describe('ttrpc messages', () => {
  const { Request, Response } = referenceTypes();

  test('a request matches proto/ttrpc.proto both ways', () => {
    const req = {
      service: 'containerd.task.v2.Task',
      method: 'Connect',
      payload: Buffer.from([10, 2, 105, 100]),
      timeoutNano: 5_000_000_000_123,
      metadata: [
        { key: 'containerd-namespace-ttrpc', value: 'default' },
        { key: 'k', value: 'v1' },
        { key: 'k', value: 'v2' },
      ],
    };
    const mine = encodeRequest(req);
    const ref = Request.toObject(Request.decode(mine), { longs: Number, bytes: Buffer });
    assert.deepEqual(ref, { ...req });
    const theirs = Request.encode(Request.fromObject(req)).finish();
    assert.deepEqual(decodeRequest(theirs), req);
  });

  test('a response with and without a status matches proto/ttrpc.proto', () => {
    const failed = encodeResponse({ status: { code: 5, message: 'container "x": not found' }, payload: new Uint8Array() });
    assert.deepEqual(Response.toObject(Response.decode(failed)), { status: { code: 5, message: 'container "x": not found' } });
    const ok = encodeResponse({ payload: Buffer.from('abc') });
    assert.deepEqual(Response.toObject(Response.decode(ok), { bytes: String }), { payload: Buffer.from('abc').toString('base64') });
    const theirs = Response.encode(
      Response.fromObject({ status: { code: 3, message: 'bad', details: [{ type_url: 'x', value: Buffer.from('y') }] }, payload: Buffer.from('p') }),
    ).finish();
    assert.deepEqual(decodeResponse(theirs), { status: { code: 3, message: 'bad' }, payload: Buffer.from('p') });
  });

  test('unknown fields are skipped; truncated bytes throw', () => {
    const w = protobuf.Writer.create();
    w.uint32((9 << 3) | 0).uint64(7); // field 9 varint
    w.uint32((1 << 3) | 2).string('svc');
    w.uint32((10 << 3) | 5).fixed32(1); // field 10 fixed32
    const req = decodeRequest(w.finish());
    assert.equal(req.service, 'svc');
    assert.throws(() => decodeRequest(encodeRequest({ ...req, method: 'Method' }).subarray(0, 7)));
    assert.throws(() => decodeRequest(Buffer.from([0xff, 0xff, 0xff])));
  });
});
