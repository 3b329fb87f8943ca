import tar from 'tar-stream';

type Sink = ReturnType<tar.Pack['entry']>;

/** One entry of a tar stream; a file's bytes come lazily, so a layer is never held in memory. */
export type TarEntry =
  | {
      readonly type: 'file';
      readonly path: string;
      readonly size: number;
      readonly mode?: number;
      readonly content: () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
    }
  | { readonly type: 'directory'; readonly path: string; readonly mode?: number }
  | { readonly type: 'symlink'; readonly path: string; readonly linkname: string };

/** A file entry whose content is the given bytes. */
export function fileEntry(path: string, content: string | Uint8Array, mode = 0o644): TarEntry {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return { type: 'file', path, size: bytes.byteLength, mode, content: () => [bytes] };
}

/** `/a/b/` → `a/b`; refuses empty paths and `..` segments, which no test image needs. */
export function normalizePath(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new Error(`bad path in image: ${JSON.stringify(path)}`);
  return parts.join('/');
}

/**
 * Normalizes paths, adds the parent directories that are missing (mode 0755), refuses two
 * entries for one path, and sorts by path, so the same entries in any order give the same tar.
 */
export function prepareEntries(entries: Iterable<TarEntry>): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const e of entries) {
    const path = normalizePath(e.path);
    if (byPath.has(path)) throw new Error(`two entries for ${path}`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const existing = byPath.get(dir);
      if (!existing) byPath.set(dir, { type: 'directory', path: dir, mode: 0o755 });
      else if (existing.type !== 'directory') throw new Error(`${dir} is a parent of ${path} but not a directory`);
    }
  }
  // Byte order of the UTF-8 path, not locale order.
  return [...byPath.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

export interface TarOptions {
  /** Every entry's mtime (default: the epoch), so a rebuild gives the same bytes. */
  readonly mtime?: Date;
}

/** Resolves once the sink can take more, or rejects if it fails first. */
function drained(sink: Sink): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      sink.off('drain', onDrain);
      sink.off('error', done);
      sink.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = () => done();
    const onClose = () => done(new Error('tar entry closed before it was written'));
    sink.on('drain', onDrain);
    sink.on('error', done);
    sink.on('close', onClose);
  });
}

async function writeEntries(pack: tar.Pack, entries: readonly TarEntry[], mtime: Date): Promise<void> {
  const common = { mtime, uid: 0, gid: 0, uname: 'root', gname: 'root' };
  for (const e of entries) {
    const header =
      e.type === 'file'
        ? { ...common, name: e.path, type: 'file' as const, size: e.size, mode: e.mode ?? 0o644 }
        : e.type === 'directory'
          ? { ...common, name: e.path, type: 'directory' as const, mode: e.mode ?? 0o755 }
          : { ...common, name: e.path, type: 'symlink' as const, linkname: e.linkname, mode: 0o777 };
    let sink!: Sink;
    const finished = new Promise<void>((ok, fail) => {
      sink = pack.entry(header, (err) => (err ? fail(err) : ok()));
    });
    // When the pack fails, its error reaches the reader; the entry's copies of it are not news.
    finished.catch(() => {});
    sink.on('error', () => {});
    if (e.type === 'file') {
      let written = 0;
      for await (const chunk of e.content()) {
        written += chunk.byteLength;
        if (written > e.size) throw new Error(`${e.path}: content is longer than its size ${e.size}`);
        if (!sink.write(chunk)) await drained(sink);
      }
      if (written !== e.size) throw new Error(`${e.path}: content is ${written} bytes, not ${e.size}`);
    }
    // streamx types `end` with a required argument; undefined ends without writing.
    sink.end(undefined);
    await finished;
  }
  pack.finalize();
}

/**
 * The bytes of a tar of `entries`, in the given order, produced only as fast as they are read.
 * Headers are fixed (uid/gid 0, root/root, the given mtime) so the output depends only on entries.
 */
export async function* tarStream(entries: readonly TarEntry[], opts: TarOptions = {}): AsyncGenerator<Buffer> {
  const pack = tar.pack();
  const producing = writeEntries(pack, entries, opts.mtime ?? new Date(0)).catch((err: unknown) => {
    pack.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  });
  // An unhandled rejection must not escape while the consumer is still reading.
  producing.catch(() => {});
  try {
    for await (const chunk of pack as AsyncIterable<Buffer>) yield chunk;
    await producing;
  } finally {
    if (!pack.destroyed) pack.destroy();
  }
}
