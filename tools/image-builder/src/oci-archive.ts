import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { layoutFiles } from './image-layout.js';
import { prepareEntries, type TarEntry, tarStream } from './tar-entries.js';

/** Streams `entries` as a tar to `tarPath`, atomically (a temporary file, then rename). */
export async function writeTarFile(entries: readonly TarEntry[], tarPath: string): Promise<void> {
  const tmp = `${tarPath}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await pipeline(tarStream(prepareEntries(entries)), createWriteStream(tmp));
    await rename(tmp, tarPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** A tar of an OCI image layout: what `ctr images import` and `skopeo copy oci-archive:` read. */
export async function writeOciArchive(layoutDir: string, tarPath: string): Promise<void> {
  const entries: TarEntry[] = [];
  for (const rel of await layoutFiles(layoutDir)) {
    const path = join(layoutDir, rel);
    const { size } = await stat(path);
    entries.push({ type: 'file', path: rel, size, mode: 0o644, content: () => createReadStream(path) });
  }
  await writeTarFile(entries, tarPath);
}
