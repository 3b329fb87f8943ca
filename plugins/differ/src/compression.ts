import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { constants as zlibConstants, createGunzip, createGzip } from 'node:zlib';
import { InvalidArgumentError, NotImplementedError } from '@berth/plugin-api';
import { Decompress } from 'fzstd';

export type Compression = 'none' | 'gzip' | 'zstd';

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const CHUNK = 128 * 1024;

/**
 * The compression a layer media type declares, or undefined when the type
 * says nothing (application/octet-stream, an empty type). OCI and Docker
 * layer types, the non-distributable variants included; encrypted layers
 * and non-layer types are NotImplemented, as containerd's differ answers.
 */
export function compressionOf(mediaType: string): Compression | undefined {
  const mt = mediaType.split(';')[0].trim().toLowerCase();
  if (mt === '' || mt === 'application/octet-stream') return undefined;
  if (mt.endsWith('+encrypted')) throw new NotImplementedError(`encrypted layers are not supported: ${mediaType}`);
  const oci = /^application\/vnd\.oci\.image\.layer\.(?:nondistributable\.)?v1\.tar(\+gzip|\+zstd)?$/.exec(mt);
  if (oci) return oci[1] === '+gzip' ? 'gzip' : oci[1] === '+zstd' ? 'zstd' : 'none';
  const docker = /^application\/vnd\.docker\.image\.rootfs\.(?:foreign\.)?diff\.tar(\.gzip|\.zstd)?$/.exec(mt);
  if (docker) return docker[1] === '.gzip' ? 'gzip' : docker[1] === '.zstd' ? 'zstd' : 'none';
  if (mt === 'application/x-tar' || mt === 'application/tar') return 'none';
  if (mt === 'application/gzip' || mt === 'application/x-gzip' || mt === 'application/tar+gzip') return 'gzip';
  if (mt === 'application/zstd' || mt === 'application/tar+zstd') return 'zstd';
  throw new NotImplementedError(`unsupported layer media type ${mediaType}`);
}

function hasMagic(head: Uint8Array, magic: readonly number[]): boolean {
  return head.length >= magic.length && magic.every((b, i) => head[i] === b);
}

/** What the first bytes say, when they say anything. */
export function sniffCompression(head: Uint8Array): Compression | undefined {
  if (hasMagic(head, GZIP_MAGIC)) return 'gzip';
  if (hasMagic(head, ZSTD_MAGIC)) return 'zstd';
  return undefined;
}

/**
 * The uncompressed bytes of a layer. As containerd's DecompressStream, the
 * magic bytes decide (a Docker `.tar` layer that is really gzip exists in
 * the wild); the media type is checked for being a layer type at all and
 * decides only when the bytes are not recognisable (then plain tar).
 */
export async function* decompress(source: AsyncIterable<Uint8Array>, mediaType: string): AsyncGenerator<Uint8Array> {
  const declared = compressionOf(mediaType);
  const it = source[Symbol.asyncIterator]();
  // Gather at least 4 bytes to sniff, yielding them again afterwards.
  const head: Uint8Array[] = [];
  let headLength = 0;
  let ended = false;
  while (headLength < ZSTD_MAGIC.length) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head.push(r.value);
    headLength += r.value.length;
  }
  const prefix = Buffer.concat(head);
  const kind = sniffCompression(prefix) ?? (declared === 'none' || declared === undefined ? 'none' : declared);
  async function* replay(): AsyncGenerator<Uint8Array> {
    try {
      if (prefix.length) yield prefix;
      if (ended) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      if (!ended) await it.return?.();
    }
  }
  if (kind === 'none') {
    yield* replay();
    return;
  }
  // A failure of the source itself (a read error, a cancel) is passed on as it is, not as corruption.
  const failure: { err?: unknown } = {};
  async function* watched(): AsyncGenerator<Uint8Array> {
    try {
      yield* replay();
    } catch (err) {
      failure.err = err;
      throw err;
    }
  }
  try {
    yield* kind === 'gzip' ? gunzip(watched()) : unzstd(watched());
  } catch (err) {
    throw failure.err ?? asCorrupt(kind, err);
  }
}

async function* gunzip(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const z = createGunzip({ chunkSize: CHUNK });
  const input = Readable.from(source, { objectMode: false, highWaterMark: CHUNK });
  // Errors surface through iterating `z`; the callback only keeps pipeline from throwing them unhandled.
  pipeline(input, z, () => {});
  try {
    for await (const chunk of z) yield chunk as Buffer;
  } finally {
    z.destroy();
    // Return only once the source is closed (its iterator returned), so a failed apply leaves nothing open.
    input.destroy();
    if (!input.closed) await new Promise((resolve) => input.once('close', resolve));
  }
}

async function* unzstd(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const out: Uint8Array[] = [];
  const d = new Decompress((chunk) => {
    out.push(chunk);
  });
  for await (const chunk of source) {
    d.push(chunk);
    while (out.length) yield out.shift() as Uint8Array;
  }
  d.push(new Uint8Array(0), true);
  while (out.length) yield out.shift() as Uint8Array;
}

function asCorrupt(kind: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  // zlib's truncation is Z_BUF_ERROR "unexpected end of file"; fzstd's is code 5.
  if ((err as { code?: unknown }).code === 'Z_BUF_ERROR' || /unexpected (end|EOF)/i.test(message)) {
    return new InvalidArgumentError(`truncated ${kind} layer: ${message}`, { cause: err });
  }
  return new InvalidArgumentError(`corrupt ${kind} layer: ${message}`, { cause: err });
}

/** A gzip stream for `compare`'s output, at zlib's default level as containerd's. */
export function gzipStream() {
  return createGzip({ level: zlibConstants.Z_DEFAULT_COMPRESSION, chunkSize: CHUNK });
}
