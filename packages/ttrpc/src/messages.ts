import protobuf from 'protobufjs';

/** Wire layout: proto/ttrpc.proto. Encoded by hand; the tests check it against that file. */
export interface TtrpcRequest {
  readonly service: string;
  readonly method: string;
  readonly payload: Uint8Array;
  /** Relative deadline; 0 means none. */
  readonly timeoutNano: number;
  readonly metadata: readonly KeyValue[];
}

export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

/** google.rpc.Status, without its details (berth neither sends nor reads them). */
export interface TtrpcStatus {
  readonly code: number;
  readonly message: string;
}

export interface TtrpcResponse {
  readonly status?: TtrpcStatus;
  readonly payload: Uint8Array;
}

const LEN = 2;

function finish(w: protobuf.Writer): Buffer {
  const bytes = w.finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeRequest(req: TtrpcRequest): Buffer {
  const w = protobuf.Writer.create();
  if (req.service) w.uint32((1 << 3) | LEN).string(req.service);
  if (req.method) w.uint32((2 << 3) | LEN).string(req.method);
  if (req.payload.length > 0) w.uint32((3 << 3) | LEN).bytes(req.payload);
  if (req.timeoutNano) w.uint32(4 << 3).int64(req.timeoutNano);
  for (const { key, value } of req.metadata) {
    w.uint32((5 << 3) | LEN).fork();
    if (key) w.uint32((1 << 3) | LEN).string(key);
    if (value) w.uint32((2 << 3) | LEN).string(value);
    w.ldelim();
  }
  return finish(w);
}

/** Throws on bytes that are not a Request. */
export function decodeRequest(bytes: Uint8Array): TtrpcRequest {
  const r = protobuf.Reader.create(bytes);
  let service = '';
  let method = '';
  let payload: Uint8Array = new Uint8Array();
  let timeoutNano = 0;
  const metadata: KeyValue[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag) {
      case (1 << 3) | LEN:
        service = r.string();
        break;
      case (2 << 3) | LEN:
        method = r.string();
        break;
      case (3 << 3) | LEN:
        payload = r.bytes();
        break;
      case 4 << 3:
        timeoutNano = protobuf.util.LongBits.from(r.int64()).toNumber();
        break;
      case (5 << 3) | LEN:
        metadata.push(decodeKeyValue(r, r.uint32()));
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return { service, method, payload, timeoutNano, metadata };
}

function decodeKeyValue(r: protobuf.Reader, length: number): KeyValue {
  const end = r.pos + length;
  let key = '';
  let value = '';
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === ((1 << 3) | LEN)) key = r.string();
    else if (tag === ((2 << 3) | LEN)) value = r.string();
    else r.skipType(tag & 7);
  }
  if (r.pos !== end) throw new Error('KeyValue overruns its length');
  return { key, value };
}

export function encodeResponse(res: TtrpcResponse): Buffer {
  const w = protobuf.Writer.create();
  if (res.status && (res.status.code !== 0 || res.status.message)) {
    w.uint32((1 << 3) | LEN).fork();
    if (res.status.code) w.uint32(1 << 3).int32(res.status.code);
    if (res.status.message) w.uint32((2 << 3) | LEN).string(res.status.message);
    w.ldelim();
  }
  if (res.payload.length > 0) w.uint32((2 << 3) | LEN).bytes(res.payload);
  return finish(w);
}

/** Throws on bytes that are not a Response. */
export function decodeResponse(bytes: Uint8Array): TtrpcResponse {
  const r = protobuf.Reader.create(bytes);
  let status: TtrpcStatus | undefined;
  let payload: Uint8Array = new Uint8Array();
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag === ((1 << 3) | LEN)) status = decodeStatus(r, r.uint32());
    else if (tag === ((2 << 3) | LEN)) payload = r.bytes();
    else r.skipType(tag & 7);
  }
  return status ? { status, payload } : { payload };
}

function decodeStatus(r: protobuf.Reader, length: number): TtrpcStatus {
  const end = r.pos + length;
  let code = 0;
  let message = '';
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === 1 << 3) code = r.int32();
    else if (tag === ((2 << 3) | LEN)) message = r.string();
    else r.skipType(tag & 7);
  }
  if (r.pos !== end) throw new Error('Status overruns its length');
  return { code, message };
}
