import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The shim's V8 start-up snapshot: `serve` with its modules loaded and its
 * .proto files parsed, built by scripts/build-snapshot.mjs after `tsc -b`. A
 * `serve` started from it listens in ~80 ms instead of ~170 ms (the
 * spawn-to-ready time of a group's first container: node itself, then
 * protobufjs, koffi, some fifty ES modules and the .proto files).
 */
export const SNAPSHOT_BLOB = fileURLToPath(new URL('./snapshot/serve.blob', import.meta.url));
export const SNAPSHOT_INFO = fileURLToPath(new URL('./snapshot/serve.json', import.meta.url));
export const SNAPSHOT_BUNDLE = fileURLToPath(new URL('./snapshot/serve.cjs', import.meta.url));

/** What serve.json records of a build. */
export interface SnapshotInfo {
  /** Where the blob was built: it holds that checkout's absolute paths (protos, koffi). */
  readonly blob: string;
  readonly node: string;
  readonly execPath: string;
  readonly flags: readonly string[];
  readonly inputs: readonly { readonly path: string; readonly size: number; readonly sha256: string }[];
}

/** Input digests by path, for as long as the file keeps its size and mtime (a shim start re-reads only what changed). */
const digests = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

function sha256Of(path: string, st: { size: number; mtimeMs: number }): string {
  const known = digests.get(path);
  if (known && known.size === st.size && known.mtimeMs === st.mtimeMs) return known.sha256;
  const sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
  digests.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
  return sha256;
}

/**
 * Why the snapshot cannot start a shim here, or undefined when it can. A blob
 * built in another checkout points at that checkout's files; node refuses a
 * blob built by another node or with other V8 flags (and exits); and
 * a blob built before the code changed would run the old code: each input file
 * must still have the content it had at build time.
 */
export function snapshotProblem(
  info: SnapshotInfo,
  flags: readonly string[],
  execPath = process.execPath,
  blob = SNAPSHOT_BLOB,
): string | undefined {
  // A dist/ copied from elsewhere (nx restores build outputs from its cache across checkouts).
  if (info.blob !== blob) return `built as ${info.blob}`;
  if (info.node !== process.version) return `built by node ${info.node}, this is ${process.version}`;
  if (info.execPath !== realpathSync(execPath)) return `built by ${info.execPath}, not ${execPath}`;
  if (info.flags.join(' ') !== flags.join(' ')) return `built with flags ${info.flags.join(' ')}`;
  for (const input of info.inputs) {
    let st: { size: number; mtimeMs: number };
    try {
      st = statSync(input.path);
    } catch {
      return `${input.path} is gone`;
    }
    // Content, not mtime: the nx cache restores dist/ files with new mtimes.
    if (st.size !== input.size || sha256Of(input.path, st) !== input.sha256) return `${input.path} changed since the build`;
  }
  return undefined;
}

/** The snapshot's state here: in use, or why not (not built, or stale: rebuild with npm run build). */
export function snapshotStatus(flags: readonly string[]): { readonly usable: boolean; readonly reason: string } {
  if (!existsSync(SNAPSHOT_BLOB) || !existsSync(SNAPSHOT_INFO)) return { usable: false, reason: 'not built' };
  let info: SnapshotInfo;
  try {
    info = JSON.parse(readFileSync(SNAPSHOT_INFO, 'utf8')) as SnapshotInfo;
  } catch (err) {
    return { usable: false, reason: `unreadable ${SNAPSHOT_INFO}: ${(err as Error).message}` };
  }
  const problem = snapshotProblem(info, flags);
  return problem ? { usable: false, reason: `stale: ${problem}` } : { usable: true, reason: SNAPSHOT_BLOB };
}
