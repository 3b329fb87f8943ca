import type { SnapshotUsage } from '@berth/plugin-api';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** st_blocks counts 512-byte units whatever the filesystem's block size. */
const BLOCK_UNIT = 512;
const PARALLEL_STATS = 64;

/**
 * What a directory tree takes on disk, as containerd's fs.DiskUsage (what
 * `ctr snapshots usage` shows): every inode under `root`, `root` included,
 * counted once however many hard links reach it; size is allocated blocks
 * (st_blocks × 512), so sparse files count what they use, not their length.
 * Symbolic links are not followed; other mounts inside `root` are walked too.
 */
export async function diskUsage(root: string): Promise<SnapshotUsage> {
  const seen = new Set<string>();
  let size = 0;
  const count = (st: { dev: number; ino: number; blocks: number }) => {
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) return;
    seen.add(key);
    size += st.blocks * BLOCK_UNIT;
  };

  count(await lstat(root));
  let dirs = [root];
  while (dirs.length > 0) {
    const next: string[] = [];
    for (const dir of dirs) {
      const entries = await readdir(dir, { withFileTypes: true });
      for (let i = 0; i < entries.length; i += PARALLEL_STATS) {
        const batch = entries.slice(i, i + PARALLEL_STATS);
        const stats = await Promise.all(batch.map((e) => lstat(join(dir, e.name))));
        stats.forEach((st, j) => {
          count(st);
          if (st.isDirectory()) next.push(join(dir, batch[j].name));
        });
      }
    }
    dirs = next;
  }
  return { size, inodes: seen.size };
}
