import { createReadStream, statSync } from 'node:fs';
import { deterministicRandom } from './deterministic-random.js';
import { fileEntry, type TarEntry } from './tar-entries.js';

/** Where Debian's busybox-static puts its static binary. */
export const DEFAULT_BUSYBOX = '/bin/busybox';

/** The applets the busybox layer links in /bin: what tests and `ctr run` examples call. */
export const BUSYBOX_APPLETS: readonly string[] = [
  'sh',
  'true',
  'false',
  'echo',
  'cat',
  'ls',
  'sleep',
  'env',
  'id',
  'ps',
  'hostname',
  'wc',
  'head',
];

export const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
export const GROUP = 'root:x:0:\nnobody:x:65534:\n';

/** A file in a "files" layer: given content, or `size` deterministic random bytes. */
export interface FileSpec {
  readonly path: string;
  readonly content?: string | Uint8Array;
  /** Random bytes of this size (seeded by `seed`, else by the path) when there is no content. */
  readonly size?: number;
  readonly seed?: string;
  /** Permission bits; default 0644. */
  readonly mode?: number;
}

export type LayerSpec =
  /** The static busybox, applet symlinks in /bin, /etc/passwd and /etc/group, /root and /tmp. */
  | { readonly kind: 'busybox'; readonly busyboxPath?: string; readonly applets?: readonly string[] }
  /** One file of `size` incompressible bytes from `seed` (default path: /data/<seed>.bin). */
  | { readonly kind: 'random'; readonly size: number; readonly seed: string; readonly path?: string }
  | { readonly kind: 'files'; readonly files: readonly FileSpec[] };

/** A human-readable line for the config's history. */
export function describeLayer(spec: LayerSpec): string {
  switch (spec.kind) {
    case 'busybox':
      return 'berth-image-builder: busybox';
    case 'random':
      return `berth-image-builder: random ${spec.size} bytes (seed ${spec.seed})`;
    case 'files':
      return `berth-image-builder: files ${spec.files.map((f) => f.path).join(' ')}`;
  }
}

/** The tar entries of one layer (unsorted; prepareEntries adds parents and sorts). */
export function layerEntries(spec: LayerSpec): TarEntry[] {
  switch (spec.kind) {
    case 'busybox': {
      const binary = spec.busyboxPath ?? DEFAULT_BUSYBOX;
      // statSync fails here, with the path, rather than halfway through the tar.
      const size = statSync(binary).size;
      return [
        { type: 'file', path: 'bin/busybox', size, mode: 0o755, content: () => createReadStream(binary) },
        ...(spec.applets ?? BUSYBOX_APPLETS).map(
          (a): TarEntry => ({ type: 'symlink', path: `bin/${a}`, linkname: 'busybox' }),
        ),
        fileEntry('etc/passwd', PASSWD),
        fileEntry('etc/group', GROUP),
        { type: 'directory', path: 'root', mode: 0o700 },
        { type: 'directory', path: 'tmp', mode: 0o1777 },
      ];
    }
    case 'random':
      return [
        {
          type: 'file',
          path: spec.path ?? `data/${spec.seed}.bin`,
          size: spec.size,
          mode: 0o644,
          content: () => deterministicRandom(spec.seed, spec.size),
        },
      ];
    case 'files':
      return spec.files.map((f): TarEntry => {
        if (f.content !== undefined) return fileEntry(f.path, f.content, f.mode ?? 0o644);
        if (f.size === undefined) throw new Error(`${f.path}: a file needs content or size`);
        const size = f.size;
        return {
          type: 'file',
          path: f.path,
          size,
          mode: f.mode ?? 0o644,
          content: () => deterministicRandom(f.seed ?? f.path, size),
        };
      });
  }
}
