import { createConnection } from 'node:net';
import { fieldBytes, fieldNumber, fieldString, readFields, WireWriter } from './wire.js';

/**
 * One unary ttrpc call on a fresh connection, framed by hand: what `start`
 * and `delete` need to ask a running shim, without loading protobufjs and
 * the ttrpc package (tens of milliseconds each, on every container start).
 */
export function rawTtrpcCall(
  socketPath: string,
  service: string,
  method: string,
  payload: Buffer,
  timeoutMs: number,
): Promise<{ code: number; message: string; payload: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`ttrpc ${service}/${method}: no answer in ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | undefined, value?: { code: number; message: string; payload: Buffer }) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value as { code: number; message: string; payload: Buffer });
    };
    socket.once('error', (err) => finish(err));
    socket.once('close', () => finish(new Error(`ttrpc ${service}/${method}: connection closed`)));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 10) return;
      const length = received.readUInt32BE(0);
      if (received.length < 10 + length) return;
      const fields = readFields(received.subarray(10, 10 + length));
      const status = readFields(fieldBytes(fields, 1));
      finish(undefined, { code: fieldNumber(status, 1), message: fieldString(status, 2), payload: fieldBytes(fields, 2) });
    });
    socket.once('connect', () => {
      const request = new WireWriter()
        .bytes(1, service)
        .bytes(2, method)
        .bytes(3, payload)
        .varint(4, BigInt(timeoutMs) * 1_000_000n)
        .finish();
      const header = Buffer.alloc(10);
      header.writeUInt32BE(request.length, 0);
      header.writeUInt32BE(1, 4); // first client stream id
      header[8] = 1; // request
      socket.write(Buffer.concat([header, request]));
    });
  });
}

/**
 * Whether connecting to the unix socket at `socketPath` is refused: no process
 * listens on it any more, so the file is stale. Not merely slow: a busy shim
 * that does not answer in time is not taken for a dead one.
 */
export function socketRefuses(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

/** Asks the shim at `socketPath` to hold itself for container `id` (Task.Connect); false when none answers. */
export async function reserveShim(socketPath: string, id: string, timeoutMs = 3000): Promise<boolean> {
  try {
    const r = await rawTtrpcCall(socketPath, 'containerd.task.v2.Task', 'Connect', new WireWriter().bytes(1, id).finish(), timeoutMs);
    return r.code === 0;
  } catch {
    return false;
  }
}

/** The containers a live shim serves (berth.shim.v1.Shim/Info), or undefined when none answers. */
export async function shimContainers(socketPath: string, timeoutMs = 2000): Promise<string[] | undefined> {
  try {
    const r = await rawTtrpcCall(socketPath, 'berth.shim.v1.Shim', 'Info', Buffer.alloc(0), timeoutMs);
    if (r.code !== 0) return undefined;
    return (readFields(r.payload).get(5) ?? []).map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : ''));
  } catch {
    return undefined;
  }
}
