/** One challenge of a `WWW-Authenticate` header: scheme lower-cased, parameter names lower-cased. */
export interface AuthChallenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/**
 * Parse a `WWW-Authenticate` value (RFC 9110 §11.6.1), which may hold several
 * challenges: `Basic realm="r", Bearer realm="https://a/token",service="s",scope="repository:x:pull,push"`.
 * A token68 (`Negotiate abc==`) lands in `params[""]`. Malformed tails are
 * dropped rather than thrown: a bad header must not hide a good challenge.
 */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') return header.flatMap((h) => parseWwwAuthenticate(h));
  const s = header;
  let i = 0;
  const out: { scheme: string; params: Record<string, string> }[] = [];
  const skipWs = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && TOKEN_CHAR.test(s[i] as string)) i++;
    return s.slice(start, i);
  };
  const quoted = (): string => {
    i++; // opening quote
    let v = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++;
      v += s[i];
      i++;
    }
    i++; // closing quote
    return v;
  };
  while (i < s.length) {
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    const scheme = token();
    if (scheme === '') break;
    const challenge = { scheme: scheme.toLowerCase(), params: {} as Record<string, string> };
    out.push(challenge);
    skipWs();
    // Parameters until the next `, scheme ` (a token not followed by `=`).
    while (i < s.length) {
      skipWs();
      if (s[i] === ',') {
        i++;
        continue;
      }
      const save = i;
      const name = token();
      if (name === '') {
        i = s.length;
        break;
      }
      skipWs();
      if (s[i] !== '=') {
        // A new challenge starts here.
        i = save;
        break;
      }
      // token68 ends in `=` padding; an auth-param has a value after `=`.
      let j = i;
      while (s[j] === '=') j++;
      while (s[j] === ' ' || s[j] === '\t') j++;
      if (j >= s.length || s[j] === ',') {
        challenge.params[''] = name + s.slice(i, j).trim();
        i = j;
        continue;
      }
      i++; // '='
      skipWs();
      const value = s[i] === '"' ? quoted() : token();
      challenge.params[name.toLowerCase()] = value;
    }
  }
  return out;
}
