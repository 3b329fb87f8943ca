import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BuildResult, buildImage } from './build-image.js';
import { DEFAULT_BUSYBOX } from './layer-sources.js';
import { PRESETS } from './presets.js';
import { runCommand, which } from './processes.js';
import { DOCKER_REGISTRY, htpasswdLine, inspectWithSkopeo, pushWithSkopeo, startRegistry } from './registry.js';

async function whyNot(): Promise<string | false> {
  if (!existsSync(DOCKER_REGISTRY)) return `${DOCKER_REGISTRY} missing (docker-registry)`;
  if (!(await which('skopeo'))) return 'skopeo not installed';
  if (!existsSync(DEFAULT_BUSYBOX)) return `${DEFAULT_BUSYBOX} missing (busybox-static)`;
  return false;
}

/** perl's crypt() checks a bcrypt line the way the registry's Go bcrypt would accept it. */
async function bcryptMatches(line: string, password: string): Promise<boolean> {
  const hash = line.slice(line.indexOf(':') + 1);
  const r = await runCommand('perl', ['-e', 'my $p = <STDIN>; print crypt($p, $ARGV[0]) eq $ARGV[0] ? "yes" : "no"', hash], {
    input: password,
  });
  return r.stdout === 'yes';
}

describe('htpasswdLine', () => {
  test('perl crypt() gives a bcrypt line', async () => {
    const line = await htpasswdLine('alice', 's3cret pw', { using: 'perl' });
    assert.match(line, /^alice:\$2b\$05\$[./A-Za-z0-9]{53}$/);
    assert.equal(await bcryptMatches(line, 's3cret pw'), true);
    assert.equal(await bcryptMatches(line, 'wrong'), false);
  });

  test('htpasswd -B gives a bcrypt line', async (t) => {
    if (!(await which('htpasswd'))) return t.skip('htpasswd (apache2-utils) not installed; perl is used instead');
    const line = await htpasswdLine('alice', 's3cret pw', { using: 'htpasswd' });
    assert.match(line, /^alice:\$2y\$05\$/);
    assert.equal(await bcryptMatches(line.replace('$2y$', '$2b$'), 's3cret pw'), true);
  });

  test('refuses a user name with a colon', async () => {
    await assert.rejects(htpasswdLine('a:b', 'x'), /bad username/);
  });
});

describe('docker-registry', { skip: await whyNot() }, () => {
  let dir: string;
  let image: BuildResult;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-image-registry-'));
    image = await buildImage({ ...PRESETS.small, out: join(dir, 'layout') });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('startRegistry answers /v2/, takes a skopeo push, and stop removes everything', async () => {
    const registry = await startRegistry();
    try {
      assert.match(registry.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(registry.host, registry.url.slice('http://'.length));
      assert.equal((await fetch(`${registry.url}/v2/`)).status, 200);
      const ref = `${registry.host}/berth-test/busybox:latest`;
      const pushed = await pushWithSkopeo(image.layoutDir, ref);
      assert.equal(pushed.digest, image.manifest.digest, 'the registry keeps the manifest byte for byte');
      const info = await inspectWithSkopeo(ref);
      assert.equal(info.Digest, image.manifest.digest);
      assert.deepEqual(info.RepoTags, ['latest']);
      assert.deepEqual(info.Layers, [image.layers[0]?.digest]);
      // Served straight from the registry too.
      const res = await fetch(`${registry.url}/v2/berth-test/busybox/manifests/latest`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(res.headers.get('docker-content-digest'), image.manifest.digest);
      // delete is enabled
      const del = await fetch(`${registry.url}/v2/berth-test/busybox/manifests/${image.manifest.digest}`, { method: 'DELETE' });
      assert.equal(del.status, 202);
    } finally {
      await registry.stop();
    }
    assert.equal(existsSync(registry.dir), false);
    await assert.rejects(fetch(`${registry.url}/v2/`));
  });

  test('with auth: 401 without credentials, a push with them works', async () => {
    const registry = await startRegistry({ auth: { username: 'berth', password: 'p4ss word' } });
    try {
      assert.equal((await fetch(`${registry.url}/v2/`)).status, 401);
      const basic = Buffer.from('berth:p4ss word').toString('base64');
      assert.equal((await fetch(`${registry.url}/v2/`, { headers: { authorization: `Basic ${basic}` } })).status, 200);
      const ref = `${registry.host}/private/busybox:1`;
      await assert.rejects(pushWithSkopeo(image.layoutDir, ref), /unauthorized|authentication required/i);
      const pushed = await pushWithSkopeo(image.layoutDir, ref, { creds: 'berth:p4ss word' });
      assert.equal(pushed.digest, image.manifest.digest);
      await assert.rejects(inspectWithSkopeo(ref), /unauthorized|authentication required/i);
      assert.equal((await inspectWithSkopeo(ref, { creds: 'berth:p4ss word' })).Digest, image.manifest.digest);
    } finally {
      await registry.stop();
    }
  });

  test('two registries at once get two ports', async () => {
    const [a, b] = await Promise.all([startRegistry(), startRegistry()]);
    try {
      assert.notEqual(a.host, b.host);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
