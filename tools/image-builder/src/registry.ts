import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeOnExit, runChecked, startProcess, stopProcess, which } from './processes.js';

/** Debian's docker-registry (distribution 2.8). */
export const DOCKER_REGISTRY = '/usr/bin/docker-registry';

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

export interface RegistryOptions {
  /** Require HTTP basic auth (htpasswd) with this user. */
  readonly auth?: RegistryCredentials;
  /** How long to wait for `GET /v2/` to answer (default 15 s). */
  readonly startTimeoutMs?: number;
}

export interface TestRegistry {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT`, for image references. */
  readonly host: string;
  /** The temporary folder holding config.yml, the storage and htpasswd. */
  readonly dir: string;
  /** What the registry logged so far. */
  logs(): string;
  /** Stops the registry by PID and removes its folder. */
  stop(): Promise<void>;
}

const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** bcrypt's own base64 (no padding) of 16 salt bytes: 22 characters. */
function bcryptSalt(): string {
  const bytes = randomBytes(16);
  let out = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const c1 = bytes[i] as number;
    const c2 = bytes[i + 1];
    const c3 = bytes[i + 2];
    out += BCRYPT_ALPHABET[c1 >> 2];
    out += BCRYPT_ALPHABET[((c1 & 0x03) << 4) | ((c2 ?? 0) >> 4)];
    if (c2 === undefined) break;
    out += BCRYPT_ALPHABET[((c2 & 0x0f) << 2) | ((c3 ?? 0) >> 6)];
    if (c3 === undefined) break;
    out += BCRYPT_ALPHABET[c3 & 0x3f];
  }
  return out;
}

/**
 * One htpasswd line with a bcrypt hash (the only kind docker-registry accepts). Uses
 * apache2-utils' `htpasswd` where installed; otherwise perl's crypt(), which on Debian goes
 * to libxcrypt and knows bcrypt (`$2b$`). perl-base and libcrypt1 are essential packages.
 */
export async function htpasswdLine(
  username: string,
  password: string,
  opts: { readonly using?: 'htpasswd' | 'perl' } = {},
): Promise<string> {
  if (username.includes(':') || /[\r\n]/.test(username + password)) throw new Error('bad username or password');
  const using = opts.using ?? ((await which('htpasswd')) ? 'htpasswd' : 'perl');
  if (using === 'htpasswd') {
    const out = await runChecked('htpasswd', ['-niB', '-C', '5', username], { input: password });
    return out.trim();
  }
  const hash = await runChecked('perl', ['-e', 'my $p = <STDIN>; print crypt($p, $ARGV[0]) // ""', `$2b$05$${bcryptSalt()}`], {
    input: password,
  });
  if (!hash.startsWith('$2b$05$')) {
    throw new Error('no bcrypt available: install apache2-utils (htpasswd) for registry basic-auth tests');
  }
  return `${username}:${hash}`;
}

/** A port that was free a moment ago (the registry binds it itself, so a start may race). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function registryConfig(dir: string, port: number, htpasswd: string | undefined): string {
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'storage'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(htpasswd ? ['auth:', '  htpasswd:', '    realm: berth-test', `    path: ${JSON.stringify(htpasswd)}`] : []),
    '',
  ].join('\n');
}

/**
 * Starts Debian's docker-registry on 127.0.0.1 and a free port, storage in a temporary
 * folder; resolves once `GET /v2/` answers (200, or 401 with auth).
 */
export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-registry-'));
  const forget = removeOnExit(dir);
  try {
    let htpasswd: string | undefined;
    if (opts.auth) {
      htpasswd = join(dir, 'htpasswd');
      await writeFile(htpasswd, `${await htpasswdLine(opts.auth.username, opts.auth.password)}\n`, { mode: 0o600 });
    }
    // A port picked free may be taken before the registry binds it: try a few.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const config = join(dir, 'config.yml');
      await writeFile(config, registryConfig(dir, port, htpasswd));
      try {
        return await launch(dir, config, port, opts);
      } catch (err) {
        lastError = err;
        if (!/address already in use/.test(String(err))) break;
      }
    }
    throw lastError;
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    forget();
    throw err;
  }
}

async function launch(dir: string, config: string, port: number, opts: RegistryOptions): Promise<TestRegistry> {
  const child = startProcess(DOCKER_REGISTRY, ['serve', config]);
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  let spawnError: Error | undefined;
  child.on('error', (err) => (spawnError = err));
  const url = `http://127.0.0.1:${port}`;
  const ready = opts.auth ? [200, 401] : [200];
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  try {
    for (;;) {
      if (spawnError) throw new Error(`cannot start ${DOCKER_REGISTRY}: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode}): ${log.trim()}`);
      }
      const status = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.status,
        () => 0,
      );
      if (ready.includes(status)) break;
      if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${url} (last status ${status}): ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    url,
    host: `127.0.0.1:${port}`,
    dir,
    logs: () => log,
    stop: () => {
      stopped ??= (async () => {
        await stopProcess(child);
        await rm(dir, { recursive: true, force: true });
        removeOnExit(dir)();
      })();
      return stopped;
    },
  };
}

export interface SkopeoOptions {
  /** `user:password` for the registry. */
  readonly creds?: string;
  readonly timeoutMs?: number;
}

function dockerRef(ref: string): string {
  return ref.startsWith('docker://') ? ref : `docker://${ref}`;
}

/**
 * `skopeo copy oci:DIR:TAG docker://REF` over plain HTTP; resolves with the manifest digest
 * the registry stored. `tag` is the layout's ref.name (default `latest`).
 */
export async function pushWithSkopeo(
  layoutDir: string,
  ref: string,
  opts: SkopeoOptions & { readonly tag?: string } = {},
): Promise<{ digest: string }> {
  const digestFile = join(await mkdtemp(join(tmpdir(), 'berth-skopeo-')), 'digest');
  try {
    await runChecked(
      'skopeo',
      [
        '--insecure-policy',
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        ...(opts.creds ? ['--dest-creds', opts.creds] : []),
        '--digestfile',
        digestFile,
        `oci:${layoutDir}:${opts.tag ?? 'latest'}`,
        dockerRef(ref),
      ],
      { timeoutMs: opts.timeoutMs ?? 120_000 },
    );
    return { digest: (await readFile(digestFile, 'utf8')).trim() };
  } finally {
    await rm(join(digestFile, '..'), { recursive: true, force: true });
  }
}

/** What `skopeo inspect` prints for an image in a registry (plain HTTP allowed). */
export interface SkopeoInspection {
  readonly Name: string;
  readonly Digest: string;
  readonly RepoTags: readonly string[];
  readonly Architecture: string;
  readonly Os: string;
  readonly Layers: readonly string[];
  readonly Env: readonly string[] | null;
  readonly [key: string]: unknown;
}

export async function inspectWithSkopeo(ref: string, opts: SkopeoOptions = {}): Promise<SkopeoInspection> {
  const out = await runChecked(
    'skopeo',
    ['inspect', '--tls-verify=false', ...(opts.creds ? ['--creds', opts.creds] : []), dockerRef(ref)],
    { timeoutMs: opts.timeoutMs ?? 60_000 },
  );
  return JSON.parse(out) as SkopeoInspection;
}
