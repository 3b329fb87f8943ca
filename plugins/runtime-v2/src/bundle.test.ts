import { AlreadyExistsError, InvalidArgumentError } from '@berth/plugin-api';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Bundle, BundleFile } from './bundle.js';

let dir = '';
let state = '';
let work = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-bundle-'));
  state = join(dir, 'state', 'io.containerd.runtime.v2.task');
  work = join(dir, 'root', 'io.containerd.runtime.v2.task');
});

after(() => rmSync(dir, { recursive: true, force: true }));

const mode = (path: string) => lstatSync(path).mode & 0o7777;
const spec = { ociVersion: '1.0.2', process: { args: ['/bin/true'] }, root: { path: 'rootfs' } };

test("a bundle is laid out as containerd 1.6 lays it out: <state>/<ns>/<id>, work under the root", async () => {
  const bundle = await Bundle.create(state, work, 'ns1', 'c1', spec, '/usr/bin/containerd-shim-runc-v2');
  assert.equal(bundle.path, join(state, 'ns1', 'c1'));
  assert.equal(bundle.workDir, join(work, 'ns1', 'c1'));
  assert.equal(mode(join(state, 'ns1')), 0o711);
  assert.equal(mode(bundle.path), 0o700);
  assert.deepEqual(JSON.parse(readFileSync(join(bundle.path, BundleFile.spec), 'utf8')), spec);
  assert.ok(statSync(bundle.rootfs).isDirectory());
  assert.equal(mode(bundle.rootfs), 0o711);
  assert.ok(lstatSync(bundle.logPath).isFIFO(), 'log is a FIFO');
  assert.equal(readlinkSync(join(bundle.path, BundleFile.work)), bundle.workDir);
  assert.ok(statSync(bundle.workDir).isDirectory());
  assert.equal(await bundle.shimBinary(), '/usr/bin/containerd-shim-runc-v2');
  assert.equal(await bundle.address(), undefined, 'the shim writes its address');
  writeFileSync(join(bundle.path, BundleFile.address), 'unix:///run/containerd/s/abc');
  assert.equal(await bundle.address(), 'unix:///run/containerd/s/abc');

  await assert.rejects(Bundle.create(state, work, 'ns1', 'c1', spec, '/x'), AlreadyExistsError);
  assert.deepEqual((await Bundle.list(state, work)).map((b) => [b.namespace, b.id]), [['ns1', 'c1']]);

  await bundle.delete();
  assert.throws(() => statSync(bundle.path), /ENOENT/);
  assert.throws(() => statSync(bundle.workDir), /ENOENT/);
  assert.deepEqual(await Bundle.list(state, work), []);
  await bundle.delete(); // idempotent
});

test('delete never removes through a rootfs that still holds files', async () => {
  const bundle = await Bundle.create(state, work, 'ns1', 'c2', spec, '/x');
  writeFileSync(join(bundle.rootfs, 'precious'), 'data');
  await assert.rejects(bundle.delete(), /ENOTEMPTY/);
  assert.equal(readFileSync(join(bundle.rootfs, 'precious'), 'utf8'), 'data');
  rmSync(join(bundle.rootfs, 'precious'));
  await bundle.delete();
});

test('names are validated; listing skips what is not a bundle', async () => {
  await assert.rejects(Bundle.create(state, work, 'bad/ns', 'c', spec, '/x'), InvalidArgumentError);
  await assert.rejects(Bundle.create(state, work, 'ns', '../c', spec, '/x'), InvalidArgumentError);
  mkdirSync(join(state, 'ns2', '.hidden'), { recursive: true });
  mkdirSync(join(state, 'ns2', 'bad..id'), { recursive: true });
  writeFileSync(join(state, 'ns2', 'file'), '');
  mkdirSync(join(state, 'ns2', 'ok'));
  assert.deepEqual((await Bundle.list(state, work)).map((b) => `${b.namespace}/${b.id}`), ['ns2/ok']);
  assert.deepEqual(await Bundle.list(join(dir, 'none'), work), []);
});
