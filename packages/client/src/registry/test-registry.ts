import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/*
 * For tests only: Debian's docker-registry (distribution 2.8) on 127.0.0.1
 * with plain HTTP or TLS, no auth, htpasswd (basic) or token (bearer) auth;
 * a token server speaking the registry token protocol with RS256 JWTs that
 * the real registry verifies; and a proxy that records requests and can cut
 * or corrupt blob downloads.
 */

const run = promisify(execFile);
export const REGISTRY_BIN = '/usr/bin/docker-registry';

export const haveRegistryTools = (): boolean => existsSync(REGISTRY_BIN) && whichSync('skopeo') && whichSync('openssl');
export const haveHtpasswd = (): boolean => whichSync('htpasswd');

function whichSync(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** A self-signed certificate for 127.0.0.1 (openssl), as PEM files in `dir`. */
export async function selfSignedCert(dir: string, cn = '127.0.0.1'): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${cn}.crt`);
  const key = join(dir, `${cn}.key`);
  await run('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert,
  ]);
  return { cert, key };
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly dir: string;
  close(): Promise<void>;
}

export interface RegistryOptions {
  /** Basic auth: one user from an htpasswd file (bcrypt, made with `htpasswd -B`). */
  readonly htpasswd?: { readonly user: string; readonly password: string };
  /** Bearer auth: tokens from this server. */
  readonly token?: TokenServer;
  /** Serve TLS with a self-signed certificate. */
  readonly tls?: boolean;
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
  ];
  if (opts.tls) {
    const { cert, key } = await selfSignedCert(dir);
    lines.push('  tls:', `    certificate: ${cert}`, `    key: ${key}`);
  }
  if (opts.htpasswd) {
    const { stdout } = await run('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password]);
    writeFileSync(join(dir, 'htpasswd'), stdout);
    lines.push('auth:', '  htpasswd:', '    realm: berth-test', `    path: ${join(dir, 'htpasswd')}`);
  }
  if (opts.token) {
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${opts.token.realm}`,
      `    service: ${opts.token.service}`,
      `    issuer: ${opts.token.issuer}`,
      `    rootcertbundle: ${opts.token.certPath}`,
    );
  }
  writeFileSync(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  // A test process that dies without its after() hooks must not leave registries behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const close = async () => {
    process.removeListener('exit', killOnExit);
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitForHttp(host, !!opts.tls, child, () => stderr);
  } catch (err) {
    await close();
    throw err;
  }
  return { host, dir, close };
}

async function waitForHttp(host: string, tls: boolean, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  const [hostname, port] = host.split(':') as [string, string];
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited ${child.exitCode}: ${log()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(Number(port), hostname, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) return;
    if (Date.now() > deadline) throw new Error(`docker-registry did not listen on ${host}${tls ? ' (tls)' : ''}: ${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

// ---------------------------------------------------------------- token server

export interface TokenRequest {
  readonly scopes: readonly string[];
  readonly service: string;
  /** The user from the Basic header, or undefined when anonymous. */
  readonly user?: string;
}

export interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certPath: string;
  readonly requests: TokenRequest[];
  close(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/**
 * The registry token protocol (what Docker Hub's auth.docker.io speaks):
 * GET /token?service=S&scope=repository:NAME:pull,push with optional Basic
 * credentials answers `{token, expires_in}`, the token an RS256 JWT whose x5c
 * header carries the certificate the registry trusts. A known user gets
 * every action asked for; anonymous callers get `pull` only when
 * `anonymousPull`, else 401.
 */
export async function startTokenServer(opts: { users: Record<string, string>; anonymousPull?: boolean; expiresIn?: number }): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'berth-token-'));
  const { cert, key } = await selfSignedCert(dir, 'berth-token-issuer');
  const certDer = new X509Certificate(readFileSync(cert)).raw;
  const privateKey = createPrivateKey(readFileSync(key));
  const service = 'berth-test-registry';
  const issuer = 'berth-test-issuer';
  const requests: TokenRequest[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    const user = basicUser(req.headers);
    requests.push({ scopes, service: url.searchParams.get('service') ?? '', ...(user ? { user: user.name } : {}) });
    const known = user && opts.users[user.name] === user.password;
    if ((user && !known) || (!user && !opts.anonymousPull)) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="token"' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(':');
      if (!type || !name || !actions) return [];
      const granted = actions.split(',').filter((a) => known || a === 'pull');
      return [{ type, name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const expiresIn = opts.expiresIn ?? 300;
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] };
    const claims = {
      iss: issuer,
      sub: user?.name ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signing).sign(privateKey);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${signing}.${b64url(signature)}`, expires_in: expiresIn, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certPath: cert,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function basicUser(headers: IncomingHttpHeaders): { name: string; password: string } | undefined {
  const m = /^Basic (.+)$/i.exec(headers.authorization ?? '');
  if (!m?.[1]) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return { name: text.slice(0, colon), password: text.slice(colon + 1) };
}

// ---------------------------------------------------------------- proxy

export interface ProxiedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly status?: number;
}

export interface ProxyOptions {
  /** Cut the connection after this many body bytes of the first blob GET (once). */
  readonly cutBlobAfter?: number;
  /** Flip one byte in the middle of every blob GET body. */
  readonly corruptBlobs?: boolean;
  /** Only blobs whose digest is in this set are cut or corrupted (default: any). */
  readonly only?: ReadonlySet<string>;
}

export interface TestProxy {
  readonly host: string;
  readonly requests: ProxiedRequest[];
  close(): Promise<void>;
}

/** A plain-HTTP proxy in front of `target` (a plain-HTTP registry) that records and tampers. */
export async function startProxy(target: string, opts: ProxyOptions = {}): Promise<TestProxy> {
  const requests: ProxiedRequest[] = [];
  let cut = false;
  const [thost, tport] = target.split(':') as [string, string];
  const server = http.createServer((req, res) => {
    const entry: { method: string; url: string; headers: IncomingHttpHeaders; status?: number } = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
    };
    requests.push(entry);
    const up = http.request({ host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      entry.status = upRes.statusCode;
      const digest = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '')?.[1];
      const tamper = req.method === 'GET' && digest && (upRes.statusCode === 200 || upRes.statusCode === 206) && (!opts.only || opts.only.has(digest));
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (!tamper) {
        upRes.pipe(res);
        return;
      }
      const length = Number(upRes.headers['content-length'] ?? 0);
      let sent = 0;
      const cutHere = opts.cutBlobAfter !== undefined && !cut ? opts.cutBlobAfter : undefined;
      if (cutHere !== undefined) cut = true;
      upRes.on('data', (chunk: Buffer) => {
        let out = chunk;
        if (opts.corruptBlobs) {
          const mid = Math.floor(length / 2) - sent;
          if (mid >= 0 && mid < chunk.length) {
            out = Buffer.from(chunk);
            out[mid] = (out[mid] ?? 0) ^ 0xff;
          }
        }
        if (cutHere !== undefined && sent + out.length >= cutHere) {
          res.write(out.subarray(0, cutHere - sent));
          sent = cutHere;
          upRes.destroy();
          // Let the bytes go out, then drop the connection mid-body.
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        }
        sent += out.length;
        res.write(out);
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
