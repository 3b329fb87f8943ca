import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseReference } from './reference.js';
import { RegistryClient } from './registry-client.js';
import { RegistryError } from './registry-error.js';
import { type BuiltImage, buildImage, skopeoDigest, skopeoPush } from './test-image.js';
import { haveHtpasswd, haveRegistryTools, startRegistry, startTokenServer, type TestRegistry, type TokenServer } from './test-registry.js';

/*
 * The distribution client against Debian's real docker-registry: plain HTTP,
 * TLS, htpasswd basic auth and token (bearer) auth with the registry itself
 * verifying our token server's JWTs. Images are built here and pushed with
 * skopeo, or pushed by the client and checked with skopeo.
 */

const skip = haveRegistryTools() ? false : 'needs docker-registry, skopeo and openssl';

async function readAll(body: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('RegistryClient against docker-registry', { skip }, () => {
  let work: string;
  let image: BuiltImage;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'berth-regclient-'));
    image = buildImage(join(work, 'img'), { randomBytes: 200_000 });
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  describe('plain HTTP, anonymous', () => {
    let reg: TestRegistry;
    let client: RegistryClient;
    before(async () => {
      reg = await startRegistry();
      await skopeoPush(image, `${reg.host}/test/app:v1`);
      client = new RegistryClient(reg.host, { plainHttp: true });
    });
    after(async () => {
      client?.close();
      await reg?.close();
    });

    it('resolves a tag to the manifest descriptor (HEAD with Accept)', async () => {
      const desc = await client.resolve(parseReference(`${reg.host}/test/app:v1`));
      assert.deepEqual(desc, image.target);
    });

    it('resolves a digest reference and refuses an unknown tag as not found', async () => {
      const desc = await client.resolve(parseReference(`${reg.host}/test/app@${image.target.digest}`));
      assert.equal(desc.digest, image.target.digest);
      await assert.rejects(client.resolve(parseReference(`${reg.host}/test/app:nope`)), (err: RegistryError) => err.kind === 'not-found');
    });

    it('fetches a manifest and checks its digest', async () => {
      const { descriptor, data } = await client.fetchManifest('test/app', image.target.digest, { expected: image.target });
      assert.deepEqual(descriptor, image.target);
      assert.deepEqual(data, image.blobs.get(image.target.digest));
    });

    it('fetches a blob whole and from an offset (Range)', async () => {
      const layer = image.manifests[0]?.layers.at(-1);
      assert.ok(layer);
      const want = image.blobs.get(layer.digest) as Buffer;
      const whole = await client.fetchBlob('test/app', layer);
      assert.deepEqual(await readAll(whole.body), want);
      const part = await client.fetchBlob('test/app', layer, 1000);
      assert.equal(part.offset, 1000);
      assert.deepEqual(await readAll(part.body), want.subarray(1000));
    });

    it('pushes blobs (monolithic and chunked) and a manifest, which skopeo then reads', async () => {
      const m = image.manifests[0];
      assert.ok(m);
      const blobs = [m.config, ...m.layers];
      for (const [i, b] of blobs.entries()) {
        assert.equal(await client.hasBlob('other/app', b.digest, { push: true }), false);
        const data = image.blobs.get(b.digest) as Buffer;
        let sent = 0;
        await client.pushBlob('other/app', b, (offset) => Readable.from([data.subarray(offset)]), {
          ...(i % 2 === 1 ? { chunkSize: 64 * 1024 } : {}),
          onProgress: (n) => {
            sent = n;
          },
        });
        assert.equal(sent, b.size);
        assert.equal(await client.hasBlob('other/app', b.digest), true);
      }
      await client.pushManifest('other/app', 'copy', m.manifest, image.blobs.get(m.manifest.digest) as Buffer);
      assert.equal(await skopeoDigest(`${reg.host}/other/app:copy`), m.manifest.digest);
    });

    it('lets the registry refuse a blob whose bytes do not match its digest', async () => {
      const layer = image.manifests[0]?.layers[0];
      assert.ok(layer);
      const lie = { ...layer, digest: `sha256:${'0'.repeat(64)}` };
      await assert.rejects(
        client.pushBlob('other/lie', lie, () => Readable.from([image.blobs.get(layer.digest) as Buffer])),
        (err: RegistryError) => err.status === 400 && /DIGEST_INVALID/.test(err.message),
      );
    });

    it('reports an unreachable registry as a retryable RegistryError, not as unavailable', async () => {
      const dead = new RegistryClient('127.0.0.1:1', { plainHttp: true });
      try {
        await assert.rejects(dead.resolve(parseReference('127.0.0.1:1/a')), (err: RegistryError) => {
          assert.ok(err instanceof RegistryError);
          assert.equal(err.retryable, true);
          assert.notEqual(err.kind, 'unavailable');
          return /ECONNREFUSED/.test(err.message);
        });
      } finally {
        dead.close();
      }
    });
  });

  describe('TLS with a self-signed certificate', () => {
    let reg: TestRegistry;
    before(async () => {
      reg = await startRegistry({ tls: true });
      await skopeoPush(image, `${reg.host}/tls/app:v1`);
    });
    after(async () => reg?.close());

    it('refuses the certificate unless told to skip verification', async () => {
      const strict = new RegistryClient(reg.host);
      const lax = new RegistryClient(reg.host, { skipVerify: true });
      try {
        await assert.rejects(strict.resolve(parseReference(`${reg.host}/tls/app:v1`)), /self.signed|certificate/i);
        assert.equal((await lax.resolve(parseReference(`${reg.host}/tls/app:v1`))).digest, image.target.digest);
      } finally {
        strict.close();
        lax.close();
      }
    });
  });

  describe('basic auth (htpasswd)', { skip: haveHtpasswd() ? false : 'needs htpasswd (apache2-utils)' }, () => {
    let reg: TestRegistry;
    before(async () => {
      reg = await startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } });
      await skopeoPush(image, `${reg.host}/private/app:v1`, { creds: 'alice:s3cret' });
    });
    after(async () => reg?.close());

    it('answers 401 to anonymous callers, works with the credentials, and fails once on a wrong password', async () => {
      const ref = parseReference(`${reg.host}/private/app:v1`);
      const anon = new RegistryClient(reg.host, { plainHttp: true });
      const good = new RegistryClient(reg.host, { plainHttp: true, credentials: { username: 'alice', password: 's3cret' } });
      const bad = new RegistryClient(reg.host, { plainHttp: true, credentials: { username: 'alice', password: 'nope' } });
      try {
        await assert.rejects(anon.resolve(ref), (err: RegistryError) => err.status === 401 && err.kind === 'failed-precondition');
        assert.equal((await good.resolve(ref)).digest, image.target.digest);
        await assert.rejects(bad.resolve(ref), (err: RegistryError) => err.status === 401);
      } finally {
        anon.close();
        good.close();
        bad.close();
      }
    });
  });

  describe('bearer tokens (the registry verifying our token server’s JWTs)', () => {
    let tokens: TokenServer;
    let reg: TestRegistry;
    before(async () => {
      tokens = await startTokenServer({ users: { bob: 'hunter2' }, anonymousPull: true });
      reg = await startRegistry({ token: tokens });
      await skopeoPush(image, `${reg.host}/tok/app:v1`, { creds: 'bob:hunter2' });
    });
    after(async () => {
      await reg?.close();
      await tokens?.close();
    });

    it('gets a token per scope with the credentials and reuses it', async () => {
      const client = new RegistryClient(reg.host, { plainHttp: true, credentials: { username: 'bob', password: 'hunter2' } });
      try {
        tokens.requests.length = 0;
        const ref = parseReference(`${reg.host}/tok/app:v1`);
        const desc = await client.resolve(ref);
        await client.fetchManifest('tok/app', desc.digest, { expected: desc });
        const layer = image.manifests[0]?.layers[0];
        assert.ok(layer);
        await readAll((await client.fetchBlob('tok/app', layer)).body);
        assert.equal(tokens.requests.length, 1, 'one token for repository:tok/app:pull');
        assert.deepEqual(tokens.requests[0], { scopes: ['repository:tok/app:pull'], service: tokens.service, user: 'bob' });
        // Push needs pull,push: a second token.
        await client.pushManifest('tok/app', 'again', desc, image.blobs.get(desc.digest) as Buffer);
        assert.equal(tokens.requests.length, 2);
        assert.deepEqual(tokens.requests[1]?.scopes, ['repository:tok/app:pull,push']);
        assert.equal(await skopeoDigest(`${reg.host}/tok/app:again`, { creds: 'bob:hunter2' }), desc.digest);
      } finally {
        client.close();
      }
    });

    it('pulls anonymously with an anonymous token, cannot push, and fails on bad credentials', async () => {
      const anon = new RegistryClient(reg.host, { plainHttp: true });
      const bad = new RegistryClient(reg.host, { plainHttp: true, credentials: { username: 'bob', password: 'wrong' } });
      try {
        const desc = await anon.resolve(parseReference(`${reg.host}/tok/app:v1`));
        assert.equal(desc.digest, image.target.digest);
        await assert.rejects(anon.pushManifest('tok/app', 'anon', desc, image.blobs.get(desc.digest) as Buffer), (err: RegistryError) => err.status === 401);
        await assert.rejects(bad.resolve(parseReference(`${reg.host}/tok/app:v1`)), (err: RegistryError) => err.status === 401 && /token/.test(err.message));
      } finally {
        anon.close();
        bad.close();
      }
    });
  });
});
