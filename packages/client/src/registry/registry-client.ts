import type { Descriptor } from '@berth/plugin-api';
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { Readable, Transform } from 'node:stream';
import { isIndex, isManifest, MANIFEST_ACCEPT, MediaType } from './media-types.js';
import type { Reference } from './reference.js';
import { type CredentialsProvider, type RegistryCredentials, RegistryAuthorizer } from './registry-auth.js';
import { DigestMismatchError, RegistryError, type RegistryErrorDetail } from './registry-error.js';

export interface RegistryClientOptions {
  /** Speak HTTP, not HTTPS (ctr's `--plain-http`); a function decides per host. */
  readonly plainHttp?: boolean | ((host: string) => boolean);
  /** Accept any TLS certificate (ctr's `--skip-verify`). */
  readonly skipVerify?: boolean;
  /** Extra CA certificates (PEM) to trust for TLS. */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  /** Static credentials, or a function of the registry host; none: anonymous. */
  readonly credentials?: RegistryCredentials | CredentialsProvider;
  /** Socket idle timeout in milliseconds (default 60 s). */
  readonly idleTimeout?: number;
  readonly userAgent?: string;
}

export interface RequestSignal {
  readonly signal?: AbortSignal;
}

/** A blob as it arrives: `offset` is where `body` starts (the Range asked for, when the registry honoured it). */
export interface BlobResponse {
  readonly offset: number;
  readonly body: Readable;
}

export interface PushBlobOptions extends RequestSignal {
  /** Upload in PATCH chunks of this many bytes; absent: one monolithic PUT. */
  readonly chunkSize?: number;
  /** Called with the bytes sent so far. */
  readonly onProgress?: (sent: number) => void;
}

const MAX_REDIRECTS = 5;
const MAX_AUTH_RETRIES = 2;
export const USER_AGENT = 'berth/0.1';

type Body = Buffer | (() => Readable) | undefined;

interface RequestSpec extends RequestSignal {
  readonly method: string;
  /** A path under the registry (`/v2/...`) or an absolute URL (upload locations). */
  readonly url: string;
  readonly scope: string;
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: Body;
}

/**
 * The OCI distribution API of one registry host (`Reference.apiHost`): resolve
 * and fetch manifests, fetch blobs from an offset, push blobs and manifests.
 * Authorization (anonymous, basic, bearer tokens per scope) happens on the
 * registry's 401s. Digests of manifests are verified here; blob streams are
 * verified by whoever consumes them (the content store at commit).
 */
export class RegistryClient {
  private readonly agent: http.Agent;
  private readonly auth: RegistryAuthorizer;
  private readonly plain: boolean;

  constructor(
    readonly host: string,
    private readonly opts: RegistryClientOptions = {},
  ) {
    this.plain = typeof opts.plainHttp === 'function' ? opts.plainHttp(host) : !!opts.plainHttp;
    this.agent = this.plain
      ? new http.Agent({ keepAlive: true })
      : new https.Agent({
          keepAlive: true,
          rejectUnauthorized: !opts.skipVerify,
          ...(opts.ca ? { ca: opts.ca as string | Buffer | (string | Buffer)[] } : {}),
        });
    const creds = opts.credentials;
    const provider: CredentialsProvider | undefined = typeof creds === 'function' ? creds : creds ? () => creds : undefined;
    this.auth = new RegistryAuthorizer(provider, (url, c) => this.fetchToken(url, c));
  }

  get baseUrl(): string {
    return `${this.plain ? 'http' : 'https'}://${this.host}`;
  }

  /**
   * The descriptor a tag or digest names: HEAD first, as containerd's
   * resolver does, GET when the registry does not tell the digest.
   */
  async resolve(ref: Reference, opts: RequestSignal = {}): Promise<Descriptor> {
    const url = `/v2/${ref.repository}/manifests/${ref.object}`;
    const scope = pullScope(ref.repository);
    const head = await this.request({ ...opts, method: 'HEAD', url, scope, headers: { accept: MANIFEST_ACCEPT } });
    head.resume();
    if (head.statusCode === 200) {
      const digest = header(head, 'docker-content-digest') ?? ref.digest;
      const mediaType = mediaTypeOf(header(head, 'content-type'));
      const size = Number(header(head, 'content-length'));
      if (digest && mediaType && Number.isFinite(size) && size > 0) {
        if (ref.digest && digest !== ref.digest) throw new DigestMismatchError(ref.digest, digest, `manifest ${ref}`);
        return { mediaType, digest, size };
      }
    } else if (head.statusCode !== 405 && head.statusCode !== 404) {
      throw await errorOf(head, `resolve ${ref}`);
    }
    const { descriptor } = await this.fetchManifest(ref.repository, ref.object, opts);
    return descriptor;
  }

  /**
   * A manifest or index by tag or digest, with its bytes checked against the
   * digest (the one asked for, else the registry's Docker-Content-Digest).
   * `expected`, when given, must match exactly in digest and size.
   */
  async fetchManifest(
    repository: string,
    object: string,
    opts: RequestSignal & { expected?: Descriptor } = {},
  ): Promise<{ descriptor: Descriptor; data: Buffer }> {
    const url = `/v2/${repository}/manifests/${object}`;
    const accept = opts.expected ? `${opts.expected.mediaType}, ${MANIFEST_ACCEPT}` : MANIFEST_ACCEPT;
    const res = await this.request({ ...opts, method: 'GET', url, scope: pullScope(repository), headers: { accept } });
    if (res.statusCode !== 200) throw await errorOf(res, `fetch manifest ${repository}:${object}`);
    const limit = opts.expected?.size ?? 8 * 1024 * 1024;
    const data = await readAll(res, limit, `manifest ${repository}@${object}`);
    const actual = sha256(data);
    const wanted = opts.expected?.digest ?? (object.includes(':') ? object : header(res, 'docker-content-digest'));
    if (wanted && wanted !== actual) throw new DigestMismatchError(wanted, actual, `manifest ${repository}`);
    if (opts.expected && opts.expected.size !== data.length) {
      throw new RegistryError(`manifest ${wanted}: size ${data.length}, expected ${opts.expected.size}`, res.statusCode);
    }
    const mediaType = opts.expected?.mediaType ?? mediaTypeOf(header(res, 'content-type')) ?? sniffMediaType(data);
    return { descriptor: { mediaType, digest: actual, size: data.length }, data };
  }

  /** A blob from `offset` (a Range request); a registry that ignores Range gets its first bytes skipped here. */
  async fetchBlob(repository: string, desc: Descriptor, offset = 0, opts: RequestSignal = {}): Promise<BlobResponse> {
    const headers: OutgoingHttpHeaders = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await this.request({ ...opts, method: 'GET', url: `/v2/${repository}/blobs/${desc.digest}`, scope: pullScope(repository), headers });
    if (res.statusCode === 206) {
      const start = Number(/^bytes (\d+)-/.exec(header(res, 'content-range') ?? '')?.[1] ?? Number.NaN);
      if (start !== offset) {
        res.destroy();
        throw new RegistryError(`blob ${desc.digest}: asked for bytes from ${offset}, got a range from ${start}`, 206);
      }
      return { offset, body: res };
    }
    if (res.statusCode !== 200) throw await errorOf(res, `fetch blob ${desc.digest}`);
    return { offset, body: offset > 0 ? res.pipe(skipBytes(offset)) : res };
  }

  /** HEAD on the blob: true when the repository has it. */
  async hasBlob(repository: string, digest: string, opts: RequestSignal & { push?: boolean } = {}): Promise<boolean> {
    const scope = opts.push ? pushScope(repository) : pullScope(repository);
    const res = await this.request({ ...opts, method: 'HEAD', url: `/v2/${repository}/blobs/${digest}`, scope });
    res.resume();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await errorOf(res, `check blob ${digest}`);
  }

  /**
   * Upload a blob: POST an upload session, then one PUT with the bytes (or
   * PATCH chunks and a closing PUT), the digest in the query so the registry
   * verifies it. `source(offset)` yields the bytes from `offset`.
   */
  async pushBlob(repository: string, desc: Descriptor, source: (offset: number) => Readable, opts: PushBlobOptions = {}): Promise<void> {
    const scope = pushScope(repository);
    const start = await this.request({ ...opts, method: 'POST', url: `/v2/${repository}/blobs/uploads/`, scope, headers: { 'content-length': 0 } });
    start.resume();
    if (start.statusCode === 201) return; // mounted or already there
    if (start.statusCode !== 202) throw await errorOf(start, `start upload of ${desc.digest}`);
    let location = this.locationOf(start);
    const chunk = opts.chunkSize && opts.chunkSize > 0 ? opts.chunkSize : 0;
    if (chunk > 0 && desc.size > 0) {
      for (let offset = 0; offset < desc.size; offset += chunk) {
        const end = Math.min(offset + chunk, desc.size);
        const res = await this.request({
          ...opts,
          method: 'PATCH',
          url: location,
          scope,
          headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${end - 1}`, 'content-length': end - offset },
          body: () => limitBytes(source(offset), end - offset),
        });
        res.resume();
        if (res.statusCode !== 202) throw await errorOf(res, `upload ${desc.digest} bytes ${offset}-${end - 1}`);
        location = this.locationOf(res);
        opts.onProgress?.(end);
      }
      const done = await this.request({ ...opts, method: 'PUT', url: withQuery(location, 'digest', desc.digest), scope, headers: { 'content-length': 0 } });
      done.resume();
      if (done.statusCode !== 201) throw await errorOf(done, `finish upload of ${desc.digest}`);
      return;
    }
    const res = await this.request({
      ...opts,
      method: 'PUT',
      url: withQuery(location, 'digest', desc.digest),
      scope,
      headers: { 'content-type': 'application/octet-stream', 'content-length': desc.size },
      body: () => countBytes(source(0), opts.onProgress),
    });
    res.resume();
    if (res.statusCode !== 201) throw await errorOf(res, `upload ${desc.digest}`);
  }

  /** PUT a manifest or index under a tag or digest, with its media type as Content-Type. */
  async pushManifest(repository: string, object: string, desc: Descriptor, data: Buffer, opts: RequestSignal = {}): Promise<void> {
    const res = await this.request({
      ...opts,
      method: 'PUT',
      url: `/v2/${repository}/manifests/${object}`,
      scope: pushScope(repository),
      headers: { 'content-type': desc.mediaType, 'content-length': data.length },
      body: data,
    });
    res.resume();
    if (res.statusCode !== 201) throw await errorOf(res, `push manifest ${repository}:${object}`);
    const digest = header(res, 'docker-content-digest');
    if (digest && digest !== desc.digest) throw new DigestMismatchError(desc.digest, digest, `pushed manifest ${repository}:${object}`);
  }

  close(): void {
    this.agent.destroy();
  }

  private locationOf(res: IncomingMessage): string {
    const loc = header(res, 'location');
    if (!loc) throw new RegistryError('upload: registry sent no Location', res.statusCode);
    return new URL(loc, this.baseUrl).toString();
  }

  /**
   * One request with the registry's auth dance (at most MAX_AUTH_RETRIES
   * 401s) and redirects (Authorization only to this host). Resolves with any
   * status; network failures reject with a retryable RegistryError.
   */
  private async request(spec: RequestSpec): Promise<IncomingMessage> {
    let url = new URL(spec.url, this.baseUrl);
    let authRetries = 0;
    for (let redirects = 0; ; ) {
      const ours = url.host === this.host;
      const authorization = ours ? await this.auth.header(this.host, spec.scope) : undefined;
      const res = await this.send(url, spec, authorization);
      if (res.statusCode === 401 && ours && authRetries < MAX_AUTH_RETRIES) {
        res.resume();
        authRetries++;
        if (await this.auth.unauthorized(this.host, spec.scope, res.headers['www-authenticate'], authorization)) continue;
        return res;
      }
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location && redirects < MAX_REDIRECTS) {
        res.resume();
        redirects++;
        url = new URL(res.headers.location, url);
        continue;
      }
      return res;
    }
  }

  private send(url: URL, spec: RequestSpec, authorization: string | undefined): Promise<IncomingMessage> {
    const mod = url.protocol === 'http:' ? http : https;
    const agent = url.host === this.host ? this.agent : undefined;
    const headers: OutgoingHttpHeaders = { 'user-agent': this.opts.userAgent ?? USER_AGENT, ...spec.headers };
    if (authorization) headers.authorization = authorization;
    const body = typeof spec.body === 'function' ? spec.body() : spec.body;
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = mod.request(url, {
        method: spec.method,
        headers,
        ...(agent ? { agent } : {}),
        ...(url.protocol === 'https:' && !agent && this.opts.skipVerify ? { rejectUnauthorized: false } : {}),
        ...(spec.signal ? { signal: spec.signal } : {}),
      });
      req.setTimeout(this.opts.idleTimeout ?? 60_000, () => req.destroy(new Error('registry connection idle too long')));
      req.on('response', resolve);
      req.on('error', (err) => {
        if (body instanceof Readable) body.destroy();
        reject(networkError(err, spec.method, url, spec.signal));
      });
      if (body instanceof Readable) {
        body.on('error', (err) => req.destroy(err));
        body.pipe(req);
      } else req.end(body);
    });
  }

  private async fetchToken(url: URL, creds: RegistryCredentials | undefined): Promise<{ token: string; expiresInSeconds?: number }> {
    const mod = url.protocol === 'http:' ? http : https;
    const headers: OutgoingHttpHeaders = { 'user-agent': this.opts.userAgent ?? USER_AGENT, accept: 'application/json' };
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = mod.request(url, { method: 'GET', headers, ...(url.protocol === 'https:' && this.opts.skipVerify ? { rejectUnauthorized: false } : {}) });
      req.setTimeout(this.opts.idleTimeout ?? 60_000, () => req.destroy(new Error('token server idle too long')));
      req.on('response', resolve);
      req.on('error', (err) => reject(networkError(err, 'GET', url)));
      req.end();
    });
    if (res.statusCode !== 200) throw await errorOf(res, `get a token from ${url.origin}${url.pathname}`);
    const body = JSON.parse((await readAll(res, 1024 * 1024, 'token response')).toString('utf8')) as {
      token?: string;
      access_token?: string;
      expires_in?: number;
    };
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError(`token server ${url.origin} sent no token`, res.statusCode);
    return { token, ...(typeof body.expires_in === 'number' ? { expiresInSeconds: body.expires_in } : {}) };
  }
}

export const pullScope = (repository: string): string => `repository:${repository}:pull`;
export const pushScope = (repository: string): string => `repository:${repository}:pull,push`;

export function sha256(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaTypeOf(contentType: string | undefined): string | undefined {
  const mt = contentType?.split(';')[0]?.trim();
  return mt && (isIndex(mt) || isManifest(mt) || mt.startsWith('application/vnd.')) ? mt : undefined;
}

/** A manifest served as plain JSON: its own `mediaType`, else its shape. */
function sniffMediaType(data: Buffer): string {
  try {
    const doc = JSON.parse(data.toString('utf8')) as { mediaType?: string; manifests?: unknown; layers?: unknown };
    if (doc.mediaType) return doc.mediaType;
    if (doc.manifests) return MediaType.ociIndex;
    if (doc.layers) return MediaType.ociManifest;
  } catch {}
  return MediaType.ociManifest;
}

function withQuery(location: string, key: string, value: string): string {
  const u = new URL(location);
  u.searchParams.set(key, value);
  return u.toString();
}

async function readAll(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) {
      res.destroy();
      throw new RegistryError(`${what}: more than ${limit} bytes`, res.statusCode);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function errorOf(res: IncomingMessage, what: string): Promise<RegistryError> {
  let details: RegistryErrorDetail[] = [];
  try {
    const body = (await readAll(res, 64 * 1024, 'error body')).toString('utf8');
    const parsed = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
    details = (parsed.errors ?? []).map((e) => ({ code: e.code ?? '', message: e.message ?? '' }));
  } catch {}
  const status = res.statusCode ?? 0;
  const text = details.length > 0 ? details.map((d) => `${d.code}: ${d.message}`).join('; ') : `${status} ${res.statusMessage ?? ''}`.trim();
  return new RegistryError(`${what}: ${text}`, status, details);
}

function networkError(err: Error, method: string, url: URL, signal?: AbortSignal): Error {
  if (signal?.aborted) return err;
  const code = (err as NodeJS.ErrnoException).code;
  return new RegistryError(`${method} ${url.origin}${url.pathname}: ${code ? `${code} ` : ''}${err.message}`, undefined, [], { cause: err });
}

/** Drop the first `n` bytes (a registry that answered a Range request with 200). */
function skipBytes(n: number): Transform {
  let left = n;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (left >= chunk.length) {
        left -= chunk.length;
        cb();
      } else {
        const rest = chunk.subarray(left);
        left = 0;
        cb(null, rest);
      }
    },
  });
}

/** The first `n` bytes of `source` (one PATCH chunk); the rest is not read. */
function limitBytes(source: Readable, n: number): Readable {
  let left = n;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (left <= 0) return cb();
      const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= part.length;
      cb(null, part);
      if (left <= 0) {
        source.unpipe(out);
        source.destroy();
        out.end();
      }
    },
  });
  source.on('error', (err) => out.destroy(err));
  return source.pipe(out);
}

/** Pass bytes through, reporting the running count. */
function countBytes(source: Readable, onProgress: ((sent: number) => void) | undefined): Readable {
  if (!onProgress) return source;
  let sent = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      onProgress(sent);
      cb(null, chunk);
    },
  });
  source.on('error', (err) => out.destroy(err));
  return source.pipe(out);
}
