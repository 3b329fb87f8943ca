import { mkdtemp, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, type Mount } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';

export interface OverlayOptions {
  readonly upperdir?: string;
  readonly workdir?: string;
  /** Top first, as overlay's lowerdir= lists them. */
  readonly lowerdirs: string[];
  /** `userxattr`: overlay keeps its attributes under user.overlay.* instead of trusted.overlay.*. */
  readonly userxattr: boolean;
}

export function isBindMount(m: Mount): boolean {
  return m.type === 'bind' || m.type === 'rbind' || m.options.includes('bind') || m.options.includes('rbind');
}

export function isReadOnly(m: Mount): boolean {
  return m.options.includes('ro');
}

/** The layers of an overlay mount. `lowerdir=` entries are split on unescaped colons. */
export function parseOverlay(m: Mount): OverlayOptions {
  let upperdir: string | undefined;
  let workdir: string | undefined;
  let lowerdirs: string[] = [];
  let userxattr = false;
  for (const option of m.options) {
    if (option.startsWith('upperdir=')) upperdir = option.slice('upperdir='.length);
    else if (option.startsWith('workdir=')) workdir = option.slice('workdir='.length);
    else if (option.startsWith('lowerdir=')) lowerdirs = splitLowerdirs(option.slice('lowerdir='.length));
    else if (option === 'userxattr') userxattr = true;
  }
  return { upperdir, workdir, lowerdirs, userxattr };
}

function splitLowerdirs(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) cur += value[++i];
    else if (c === ':') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.filter((d) => d !== '');
}

/**
 * The directories a set of mounts stacks, top first, when they are plain
 * directories on disk: a bind mount's source, or an overlay's upper and
 * lower directories. Undefined for anything else.
 */
export function layerDirs(mounts: readonly Mount[]): string[] | undefined {
  if (mounts.length === 0) return [];
  if (mounts.length !== 1) return undefined;
  const [m] = mounts;
  if (isBindMount(m)) return [m.source];
  if (m.type === 'overlay') {
    const o = parseOverlay(m);
    return o.upperdir ? [o.upperdir, ...o.lowerdirs] : o.lowerdirs;
  }
  return undefined;
}

/** Mount `mounts` on a fresh directory under `base` for the length of `fn`, read-only when asked. */
export async function withTempMount<T>(
  base: string,
  mounts: readonly Mount[],
  readonly: boolean,
  fn: (root: string) => Promise<T>,
): Promise<T> {
  if (mounts.length === 0 && !readonly) throw new InvalidArgumentError('no mounts to apply to');
  const dir = await mkdtemp(join(base, 'berth-differ-'));
  try {
    if (mounts.length > 0) {
      const specs = mounts.map((m) => ({ type: m.type, source: m.source, options: readonly ? [...m.options.filter((o) => o !== 'rw'), 'ro'] : [...m.options] }));
      mountAll(specs, dir);
    }
    try {
      return await fn(dir);
    } finally {
      if (mounts.length > 0) unmountAll(dir);
    }
  } finally {
    await rmdir(dir);
  }
}
