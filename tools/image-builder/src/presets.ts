import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { type BuildImageOptions, type BuildResult, buildImage } from './build-image.js';
import { isAlive } from './processes.js';
import { writeDockerArchive } from './docker-archive.js';
import { DEFAULT_BUSYBOX, type LayerSpec } from './layer-sources.js';
import { writeOciArchive } from './oci-archive.js';

export type PresetName = 'small' | 'five-layer-137m';

/** A preset's build options, less where to write. */
export type PresetOptions = Omit<BuildImageOptions, 'out'>;

const RANDOM_LAYER_SIZE = 34_000_000;

const busybox: LayerSpec = { kind: 'busybox' };
const shell = { Cmd: ['/bin/sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] };

export const PRESETS: Readonly<Record<PresetName, PresetOptions>> = {
  /** busybox only: about 1 MB. */
  small: { name: 'localhost/berth-test/busybox:latest', layers: [busybox], config: shell },
  /** busybox + 4 incompressible layers of 34 MB: ≈ 137 MB compressed, for pull/unpack benchmarks. */
  'five-layer-137m': {
    name: 'localhost/berth-test/big:latest',
    layers: [
      busybox,
      ...[1, 2, 3, 4].map((n): LayerSpec => ({ kind: 'random', size: RANDOM_LAYER_SIZE, seed: `big-${n}` })),
    ],
    config: shell,
    // Level 1: random data does not compress at any level, and level 1 builds fastest.
    gzipLevel: 1,
  },
};

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(PRESETS, name);
}

export function presetOptions(name: string): PresetOptions {
  if (!isPresetName(name)) throw new Error(`unknown preset ${name} (known: ${Object.keys(PRESETS).join(', ')})`);
  return PRESETS[name];
}

export function buildPreset(name: string, out: string, overrides: Partial<PresetOptions> = {}): Promise<BuildResult> {
  return buildImage({ ...presetOptions(name), ...overrides, out });
}

/** Bump when the builder's output changes for the same options, so caches rebuild. */
const BUILDER_FORMAT = 1;

/** The root node_modules/.cache/berth-images, or BERTH_IMAGE_CACHE. */
export function defaultCacheRoot(): string {
  if (process.env.BERTH_IMAGE_CACHE) return resolve(process.env.BERTH_IMAGE_CACHE);
  // dist/presets.js → the workspace root is the nearest ancestor with a package-lock.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    if (existsSync(join(d, 'package-lock.json'))) {
      dir = d;
      break;
    }
  }
  return join(dir, 'node_modules', '.cache', 'berth-images');
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const c of createReadStream(path)) hash.update(c as Buffer);
  return hash.digest('hex');
}

/** A hash of everything the image's bytes depend on: options, busybox binaries, zlib, format. */
export async function cacheKey(opts: PresetOptions): Promise<string> {
  const busyboxes = new Map<string, string>();
  for (const l of opts.layers) {
    if (l.kind !== 'busybox') continue;
    const path = l.busyboxPath ?? DEFAULT_BUSYBOX;
    busyboxes.set(path, await fileSha256(path));
  }
  const material = JSON.stringify({
    format: BUILDER_FORMAT,
    zlib: process.versions.zlib,
    opts: { ...opts, created: opts.created?.toISOString() },
    busyboxes: [...busyboxes.values()],
  });
  return createHash('sha256').update(material).digest('hex');
}

export interface CachedImage {
  readonly name: string;
  readonly dir: string;
  readonly layoutDir: string;
  readonly result: BuildResult;
  /** Set when asked for: a tar of the layout for `ctr images import`. */
  readonly ociArchive?: string;
  /** Set when asked for: docker save format. */
  readonly dockerArchive?: string;
  /** Whether the layout came from the cache (false: built by this call). */
  readonly hit: boolean;
}

export interface CachedPresetOptions {
  readonly ociArchive?: boolean;
  readonly dockerArchive?: boolean;
  readonly cacheRoot?: string;
}

/**
 * Builds a preset once into `<cacheRoot>/<name>/`, keyed by cacheKey(); later calls (from any
 * process) return the same paths. Builds go to a temporary folder renamed into place, so a
 * concurrent or interrupted build never leaves a half-written image behind.
 */
/**
 * Runs `fn` holding a lock directory (mkdir is atomic); a lock whose owner
 * process is gone is taken over. Concurrent holders in one process wait too.
 */
const STALE_LOCK_MS = 15 * 60 * 1000;

async function withBuildLock(lock: string, fn: () => Promise<void>): Promise<void> {
  const owner = join(lock, 'pid');
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(await readFile(owner, 'utf8').catch(() => '0'));
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      // Its owner died, or it has been held far longer than any build takes (a reused pid).
      if ((pid > 0 && !isAlive(pid)) || age > STALE_LOCK_MS) await rm(lock, { recursive: true, force: true });
      else await sleep(100);
    }
  }
  try {
    await writeFile(owner, String(process.pid));
    await fn();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

export async function cachedPreset(name: string, opts: CachedPresetOptions = {}): Promise<CachedImage> {
  const preset = presetOptions(name);
  const root = opts.cacheRoot ?? defaultCacheRoot();
  const dir = join(root, name);
  const key = await cacheKey(preset);
  const keyFile = join(dir, 'key');
  const resultFile = join(dir, 'result.json');

  const fresh = async () => (await readFile(keyFile, 'utf8').catch(() => '')) === key && existsSync(resultFile);
  const hit = await fresh();
  if (!hit) {
    await mkdir(root, { recursive: true });
    // One build at a time per preset (processes and concurrent calls alike); whoever waited finds it built.
    await withBuildLock(join(root, `.${name}.lock`), async () => {
      if (await fresh()) return;
      const tmp = join(root, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
      try {
        const built = await buildImage({ ...preset, out: join(tmp, 'layout') });
        const result: BuildResult = { ...built, layoutDir: join(dir, 'layout') };
        await writeFile(join(tmp, 'result.json'), JSON.stringify(result, null, 2));
        await writeFile(join(tmp, 'key'), key);
        const old = `${tmp}.old`;
        await rename(dir, old).catch(() => {}); // a stale build, if any
        await rename(tmp, dir);
        await rm(old, { recursive: true, force: true });
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    });
  }
  const result = JSON.parse(await readFile(resultFile, 'utf8')) as BuildResult;
  const layoutDir = join(dir, 'layout');
  const archive = async (file: string, write: (layout: string, tar: string) => Promise<void>) => {
    const path = join(dir, file);
    if (!existsSync(path)) await write(layoutDir, path);
    return path;
  };
  return {
    name: result.name,
    dir,
    layoutDir,
    result,
    hit,
    ...(opts.ociArchive ? { ociArchive: await archive('image.oci.tar', writeOciArchive) } : {}),
    ...(opts.dockerArchive ? { dockerArchive: await archive('image.docker.tar', writeDockerArchive) } : {}),
  };
}
