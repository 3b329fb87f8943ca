import { type AuthChallenge, parseWwwAuthenticate } from './www-authenticate.js';

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

/** Credentials per registry host (`domain[:port]`), or none for anonymous access. */
export type CredentialsProvider = (host: string) => RegistryCredentials | undefined | Promise<RegistryCredentials | undefined>;

/** `user:pass` (or `user`, with the password given apart), as ctr's `--user` takes it. */
export function parseUserOption(text: string, password?: string): RegistryCredentials {
  const colon = text.indexOf(':');
  if (colon === -1) return { username: text, password: password ?? '' };
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** What fetches a bearer token; the default speaks the registry token protocol over HTTP(S). */
export type TokenFetcher = (
  url: URL,
  credentials: RegistryCredentials | undefined,
) => Promise<{ token: string; expiresInSeconds?: number }>;

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

interface HostAuth {
  scheme: 'basic' | 'bearer';
  realm?: string;
  service?: string;
}

/** The token spec's minimum lifetime when a token server does not say. */
const DEFAULT_TOKEN_SECONDS = 60;

/**
 * Authorization for one registry session, as containerd's docker authorizer
 * does it: a host's first 401 tells the scheme; basic sends the credentials
 * from then on; bearer fetches a token per scope (`repository:NAME:pull`)
 * from the challenge's realm, with the credentials when there are any, and
 * caches it until shortly before it expires.
 */
export class RegistryAuthorizer {
  private readonly hosts = new Map<string, HostAuth>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();

  constructor(
    private readonly credentials: CredentialsProvider | undefined,
    private readonly fetchToken: TokenFetcher,
  ) {}

  /** The Authorization header for a request to `host` needing `scope`, if this host is known to want one. */
  async header(host: string, scope: string): Promise<string | undefined> {
    const auth = this.hosts.get(host);
    if (!auth) return undefined;
    if (auth.scheme === 'basic') {
      const creds = await this.credentials?.(host);
      return creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` : undefined;
    }
    const token = await this.token(host, auth, scope, undefined);
    return `Bearer ${token.token}`;
  }

  /**
   * Learn from a 401's challenges. True when a retry may succeed: a bearer
   * token was (re)fetched, or basic credentials exist and were not the ones
   * refused. The caller bounds its retries.
   */
  async unauthorized(host: string, scope: string, wwwAuthenticate: string | string[] | undefined, sent: string | undefined): Promise<boolean> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (bearer) {
      const auth: HostAuth = { scheme: 'bearer', realm: bearer.params.realm as string, ...(bearer.params.service ? { service: bearer.params.service } : {}) };
      this.hosts.set(host, auth);
      const key = this.tokenKey(auth, scope);
      const stale = this.tokens.get(key);
      // The cached token was refused (revoked, or too narrow): fetch anew with the scope the registry asked for.
      if (stale && sent === `Bearer ${stale.token}`) this.tokens.delete(key);
      await this.token(host, auth, scope, extraScope(bearer, scope));
      return true;
    }
    if (basic) {
      this.hosts.set(host, { scheme: 'basic' });
      const creds = await this.credentials?.(host);
      return !!creds && !sent?.startsWith('Basic ');
    }
    return false;
  }

  private tokenKey(auth: HostAuth, scope: string): string {
    return `${auth.realm} ${auth.service ?? ''} ${scope}`;
  }

  private async token(host: string, auth: HostAuth, scope: string, also: string | undefined): Promise<CachedToken> {
    const key = this.tokenKey(auth, scope);
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached;
    const inFlight = this.pending.get(key);
    if (inFlight) return inFlight;
    const p = (async () => {
      const url = new URL(auth.realm as string);
      if (auth.service) url.searchParams.set('service', auth.service);
      for (const s of new Set([scope, ...(also ? [also] : [])])) if (s) url.searchParams.append('scope', s);
      const creds = await this.credentials?.(host);
      const res = await this.fetchToken(url, creds);
      const seconds = Math.max(res.expiresInSeconds ?? DEFAULT_TOKEN_SECONDS, DEFAULT_TOKEN_SECONDS);
      // Renew a little early so a token does not expire between header() and the request.
      const token = { token: res.token, expiresAt: Date.now() + (seconds - 10) * 1000 };
      this.tokens.set(key, token);
      return token;
    })();
    this.pending.set(key, p);
    try {
      return await p;
    } finally {
      this.pending.delete(key);
    }
  }
}

/** The scope a challenge asks for, unless the one we ask for already covers it. */
function extraScope(c: AuthChallenge, ours: string): string | undefined {
  const theirs = c.params.scope;
  if (!theirs || theirs === ours) return undefined;
  const [tType, tName, tActions = ''] = theirs.split(':');
  const [oType, oName, oActions = ''] = ours.split(':');
  const covered = tType === oType && tName === oName && tActions.split(',').every((a) => oActions.split(',').includes(a));
  return covered ? undefined : theirs;
}
