import { type BigIntStats, closeSync, constants, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { type ChangeWriter, entryType, layerXattrs } from './change-writer.js';
import { lgetxattr } from '@berth/sys';

const CHUNK = 64 * 1024;
const READ_NOFOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

function lstatBig(path: string): BigIntStats | undefined {
  try {
    return lstatSync(path, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

function sortedNames(dir: string): string[] {
  return readdirSync(dir).sort();
}

/**
 * containerd's double walk (continuity fs.Changes): both trees in name
 * order, each directory's entries merged, every difference handed to the
 * writer in that order — so the same trees always give the same layer.
 */
export async function diffTrees(lower: string, upper: string, w: ChangeWriter): Promise<void> {
  await walkBoth(lower, upper, '', true, w);
}

async function walkBoth(lower: string, upper: string, rel: string, lowerIsDir: boolean, w: ChangeWriter): Promise<void> {
  const lowerNames = lowerIsDir ? sortedNames(join(lower, rel)) : [];
  const upperNames = sortedNames(join(upper, rel));
  let i = 0;
  let j = 0;
  while (i < lowerNames.length || j < upperNames.length) {
    const ln = lowerNames[i];
    const un = upperNames[j];
    let name: string;
    let inLower = false;
    let inUpper = false;
    if (un === undefined || (ln !== undefined && ln < un)) {
      name = ln;
      inLower = true;
      i++;
    } else if (ln === undefined || un < ln) {
      name = un;
      inUpper = true;
      j++;
    } else {
      name = un;
      inLower = inUpper = true;
      i++;
      j++;
    }
    const child = rel === '' ? name : `${rel}/${name}`;
    const u = inUpper ? lstatBig(join(upper, child)) : undefined;
    const l = inLower ? lstatBig(join(lower, child)) : undefined;
    if (!u) {
      if (l) await w.deleted(child);
      continue;
    }
    if (!entryType(u)) continue; // a socket
    if (!l || !entryType(l)) {
      await w.changed(child, u);
      if (u.isDirectory()) await walkBoth(lower, upper, child, false, w);
      continue;
    }
    if (sameFile(l, u, join(lower, child), join(upper, child))) await w.unchanged(child, u);
    else await w.changed(child, u);
    if (u.isDirectory()) await walkBoth(lower, upper, child, l.isDirectory(), w);
  }
}

function join(root: string, rel: string): string {
  return rel === '' ? root : `${root}/${rel}`;
}

/**
 * continuity's sameFile: type, mode, owner and device numbers, xattrs,
 * then size and mtime; when both mtimes are whole seconds (as after a tar
 * round trip) the times prove nothing and the content decides.
 */
export function sameFile(l: BigIntStats, u: BigIntStats, lp: string, up: string): boolean {
  if (l.dev === u.dev && l.ino === u.ino) return true;
  if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid || l.rdev !== u.rdev) return false;
  if (!sameXattrs(lp, up)) return false;
  const ls = l.mtimeNs / 1_000_000_000n;
  const us = u.mtimeNs / 1_000_000_000n;
  if (ls !== us) return false;
  const lns = l.mtimeNs % 1_000_000_000n;
  const uns = u.mtimeNs % 1_000_000_000n;
  if (u.isDirectory()) return lns === uns || lns === 0n || uns === 0n;
  if (l.size !== u.size) return false;
  if (lns !== 0n || uns !== 0n) return lns === uns;
  if (u.isSymbolicLink()) return readlinkSync(lp) === readlinkSync(up);
  if (u.isFile()) return u.size === 0n || sameContent(lp, up);
  return true;
}

function sameXattrs(lp: string, up: string): boolean {
  const a = layerXattrs(lp);
  const b = layerXattrs(up);
  if (a.size !== b.size) return false;
  for (const [name, value] of a) {
    const other = b.get(name);
    if (!other?.equals(value)) return false;
  }
  return true;
}

function sameContent(a: string, b: string): boolean {
  const fa = openSync(a, READ_NOFOLLOW);
  try {
    const fb = openSync(b, READ_NOFOLLOW);
    try {
      const ba = Buffer.allocUnsafe(CHUNK);
      const bb = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        const na = readSync(fa, ba, 0, CHUNK, null);
        const nb = readFull(fb, bb, na);
        if (na !== nb) return false;
        if (na === 0) return true;
        if (ba.compare(bb, 0, nb, 0, na) !== 0) return false;
      }
    } finally {
      closeSync(fb);
    }
  } finally {
    closeSync(fa);
  }
}

function readFull(fd: number, buf: Buffer, want: number): number {
  let got = 0;
  while (got < want) {
    const n = readSync(fd, buf, got, want - got, null);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** Signs in an overlay upper that the fast path cannot read on its own (the lower layers hold part of the answer). */
const UNREADABLE_XATTRS = ['redirect', 'metacopy'];

interface UpperEntry {
  rel: string;
  st: BigIntStats;
  kind: 'whiteout' | 'opaque-dir' | 'entry';
}

/**
 * The changes an overlay upper directory records, read straight from it
 * instead of walking both trees: a 0/0 character device is a deletion, an
 * opaque directory hides everything below it, anything else was added or
 * changed. Undefined when the upper uses redirects or metacopy (then only
 * the double walk is right). The listing is gathered first so that the
 * fallback is decided before anything is written.
 */
export function readOverlayUpper(upper: string, xattrPrefix: string): UpperEntry[] | undefined {
  const out: UpperEntry[] = [];
  const walk = (rel: string): boolean => {
    for (const name of sortedNames(join(upper, rel))) {
      const child = rel === '' ? name : `${rel}/${name}`;
      const path = join(upper, child);
      const st = lstatSync(path, { bigint: true });
      if (st.isCharacterDevice() && st.rdev === 0n) {
        out.push({ rel: child, st, kind: 'whiteout' });
        continue;
      }
      if (!entryType(st)) continue;
      for (const x of UNREADABLE_XATTRS) if (lgetxattr(path, `${xattrPrefix}${x}`) !== undefined) return false;
      if (st.isDirectory()) {
        const opaque = lgetxattr(path, `${xattrPrefix}opaque`)?.toString() === 'y';
        out.push({ rel: child, st, kind: opaque ? 'opaque-dir' : 'entry' });
        if (!walk(child)) return false;
      } else {
        out.push({ rel: child, st, kind: 'entry' });
      }
    }
    return true;
  };
  return walk('') ? out : undefined;
}

export async function writeOverlayUpper(entries: readonly UpperEntry[], w: ChangeWriter): Promise<void> {
  for (const e of entries) {
    if (e.kind === 'whiteout') {
      await w.deleted(e.rel);
      continue;
    }
    await w.changed(e.rel, e.st);
    if (e.kind === 'opaque-dir') await w.opaque(e.rel);
  }
}
