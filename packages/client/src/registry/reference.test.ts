import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseReference } from './reference.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const cases: [string, { domain: string; repository: string; tag?: string; digest?: string; str: string }][] = [
    ['alpine', { domain: 'docker.io', repository: 'library/alpine', tag: 'latest', str: 'docker.io/library/alpine:latest' }],
    ['alpine:3.19', { domain: 'docker.io', repository: 'library/alpine', tag: '3.19', str: 'docker.io/library/alpine:3.19' }],
    ['user/app', { domain: 'docker.io', repository: 'user/app', tag: 'latest', str: 'docker.io/user/app:latest' }],
    ['docker.io/alpine', { domain: 'docker.io', repository: 'library/alpine', tag: 'latest', str: 'docker.io/library/alpine:latest' }],
    ['index.docker.io/library/alpine:edge', { domain: 'docker.io', repository: 'library/alpine', tag: 'edge', str: 'docker.io/library/alpine:edge' }],
    ['localhost/a', { domain: 'localhost', repository: 'a', tag: 'latest', str: 'localhost/a:latest' }],
    ['localhost:5000/a/b:tag', { domain: 'localhost:5000', repository: 'a/b', tag: 'tag', str: 'localhost:5000/a/b:tag' }],
    [`localhost:5000/a/b:tag@${D}`, { domain: 'localhost:5000', repository: 'a/b', tag: 'tag', digest: D, str: `localhost:5000/a/b:tag@${D}` }],
    [`localhost:5000/a/b@${D}`, { domain: 'localhost:5000', repository: 'a/b', digest: D, str: `localhost:5000/a/b@${D}` }],
    ['127.0.0.1:5000/x:1', { domain: '127.0.0.1:5000', repository: 'x', tag: '1', str: '127.0.0.1:5000/x:1' }],
    ['ghcr.io/o/r/s:v1.2-rc_3', { domain: 'ghcr.io', repository: 'o/r/s', tag: 'v1.2-rc_3', str: 'ghcr.io/o/r/s:v1.2-rc_3' }],
    ['[::1]:5000/x', { domain: '[::1]:5000', repository: 'x', tag: 'latest', str: '[::1]:5000/x:latest' }],
    ['a__b/c.d-e', { domain: 'docker.io', repository: 'a__b/c.d-e', tag: 'latest', str: 'docker.io/a__b/c.d-e:latest' }],
  ];
  for (const [text, want] of cases) {
    it(text, () => {
      const r = parseReference(text);
      assert.equal(r.domain, want.domain);
      assert.equal(r.repository, want.repository);
      assert.equal(r.tag, want.tag);
      assert.equal(r.digest, want.digest);
      assert.equal(r.toString(), want.str);
      assert.deepEqual(parseReference(r.toString()), r, 'the normal form parses to itself');
    });
  }

  it('names the object a manifest request asks for, and the API host', () => {
    assert.equal(parseReference('alpine').object, 'latest');
    assert.equal(parseReference(`x.io/a:t@${D}`).object, D);
    assert.equal(parseReference('alpine').apiHost, 'registry-1.docker.io');
    assert.equal(parseReference('localhost:5000/a').apiHost, 'localhost:5000');
  });

  it('gives the hostname without its port (containerd keys distribution.source on it)', () => {
    assert.equal(parseReference('localhost:5000/a').hostname, 'localhost');
    assert.equal(parseReference('127.0.0.1:5000/a').hostname, '127.0.0.1');
    assert.equal(parseReference('[::1]:5000/a').hostname, '::1');
    assert.equal(parseReference('alpine').hostname, 'docker.io');
  });

  for (const bad of ['', 'UPPER/case', 'a/B', 'a:', 'a:-x', 'a@sha256:123', `a@md5:${'a'.repeat(32)}`, 'a//b', 'a/', '/a', 'x.io/', `a:${'t'.repeat(129)}`, 'a b', `x.io/${'a'.repeat(260)}`, 'bad_host.io:x/a']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseReference(bad), (err: Error & { kind?: string }) => err.kind === 'invalid-argument' && /invalid reference/.test(err.message));
    });
  }
});
