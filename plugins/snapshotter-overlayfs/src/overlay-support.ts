import { errorMessage } from '@berth/plugin-api';
import { mountAll, unmountAll } from '@berth/sys';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Why overlayfs cannot serve snapshots under `root`, or undefined when it
 * can: as containerd, by mounting an overlay with two lower directories in a
 * scratch directory under the root (the kernel may load the module on the
 * way, so /proc/filesystems alone does not decide).
 */
export async function overlayUnsupportedReason(root: string): Promise<string | undefined> {
  const listed = (await readFile('/proc/filesystems', 'utf8').catch(() => '')).split('\n').some((l) => /\boverlay$/.test(l.trim()));
  await mkdir(root, { recursive: true, mode: 0o700 });
  const dir = await mkdtemp(join(root, 'overlay-check-'));
  try {
    for (const d of ['lower1', 'lower2', 'upper', 'work', 'merged']) await mkdir(join(dir, d));
    const merged = join(dir, 'merged');
    const p = (d: string) => join(dir, d);
    try {
      mountAll(
        [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${p('lower2')}:${p('lower1')}`, `upperdir=${p('upper')}`, `workdir=${p('work')}`] }],
        merged,
      );
    } catch (err) {
      return `overlayfs cannot be mounted on ${root}${listed ? '' : ' (not in /proc/filesystems)'}: ${errorMessage(err)}`;
    }
    unmountAll(merged);
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
