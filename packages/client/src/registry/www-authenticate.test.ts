import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWwwAuthenticate } from './www-authenticate.js';

describe('parseWwwAuthenticate', () => {
  it('reads Docker Hub’s bearer challenge', () => {
    assert.deepEqual(
      parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'),
      [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' } }],
    );
  });

  it('keeps commas inside quoted values (scope with pull,push)', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="http://127.0.0.1:1/token",service="s",scope="repository:a/b:pull,push",error="insufficient_scope"');
    assert.equal(c?.params.scope, 'repository:a/b:pull,push');
    assert.equal(c?.params.error, 'insufficient_scope');
  });

  it('reads a basic challenge and several challenges in one header', () => {
    assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
    assert.deepEqual(parseWwwAuthenticate('Basic realm="a", Bearer realm="https://x/token", service=reg'), [
      { scheme: 'basic', params: { realm: 'a' } },
      { scheme: 'bearer', params: { realm: 'https://x/token', service: 'reg' } },
    ]);
  });

  it('lower-cases schemes and parameter names, allows spaces around =, and unescapes quoted pairs', () => {
    assert.deepEqual(parseWwwAuthenticate('BEARER Realm = "a\\"b" ,  Service=x'), [{ scheme: 'bearer', params: { realm: 'a"b', service: 'x' } }]);
  });

  it('takes token68 and bare schemes', () => {
    assert.deepEqual(parseWwwAuthenticate('Negotiate abc123==, Basic'), [
      { scheme: 'negotiate', params: { '': 'abc123==' } },
      { scheme: 'basic', params: {} },
    ]);
  });

  it('takes several header lines and nothing', () => {
    assert.deepEqual(parseWwwAuthenticate(['Basic realm="a"', 'Bearer realm="b"']).map((c) => c.scheme), ['basic', 'bearer']);
    assert.deepEqual(parseWwwAuthenticate(undefined), []);
    assert.deepEqual(parseWwwAuthenticate(''), []);
  });

  it('survives garbage without throwing', () => {
    for (const s of ['=', '"', 'Bearer realm="unterminated', ',,,', 'Bearer ,realm=x', 'Bearer realm=']) {
      assert.doesNotThrow(() => parseWwwAuthenticate(s), s);
    }
    assert.equal(parseWwwAuthenticate('Bearer realm="unterminated')[0]?.params.realm, 'unterminated');
  });
});
