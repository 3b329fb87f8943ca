import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateContainerSpec, parseMountFlag } from './container-spec.js';
import { defaultUnixCapabilities, defaultUnixSpec } from './default-spec.js';
import { chainId } from './image-config.js';
import { rootfsFromDirectory, rootfsFromMounts } from './rootfs-files.js';
import { SpecTypeUrl, specFromAny, specToAny } from './runtime-spec.js';
import { replaceOrAppendEnv } from './spec-opts.js';
import { applyUser, parseGroup, parsePasswd } from './user.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\nappgrp:x:1001:\nwheel:x:10:app,other\naudio:x:29:other,app\n';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-spec-test-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function rootfs(name: string, files: Record<string, string>): string {
  const root = join(dir, name);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  mkdirSync(root, { recursive: true });
  return root;
}

describe('containerd defaults', () => {
  it('match populateDefaultUnixSpec and WithDefaultUnixDevices', async () => {
    const s = await generateContainerSpec({ namespace: 'ns1', id: 'c1' });
    assert.equal(s.ociVersion, '1.0.2-dev');
    assert.deepEqual(s.root, { path: 'rootfs' });
    assert.equal(s.process?.noNewPrivileges, true);
    assert.deepEqual(s.process?.user, { uid: 0, gid: 0 });
    assert.equal(s.process?.cwd, '/');
    assert.equal(defaultUnixCapabilities().length, 14);
    for (const set of ['bounding', 'effective', 'permitted'] as const) assert.deepEqual(s.process?.capabilities?.[set], defaultUnixCapabilities());
    assert.equal(s.process?.capabilities?.inheritable, undefined);
    assert.deepEqual(s.process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
    assert.deepEqual(
      s.mounts?.map((m) => m.destination),
      ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/run'],
    );
    assert.equal(s.linux?.cgroupsPath, '/ns1/c1');
    assert.deepEqual(
      s.linux?.namespaces?.map((n) => n.type),
      ['pid', 'ipc', 'uts', 'mount', 'network'],
    );
    assert.ok(s.linux?.maskedPaths?.includes('/proc/kcore'));
    assert.ok(s.linux?.readonlyPaths?.includes('/proc/sysrq-trigger'));
    const devices = s.linux?.resources?.devices ?? [];
    assert.deepEqual(devices[0], { allow: false, access: 'rwm' });
    assert.equal(devices.length, 10);
    assert.deepEqual(devices[8], { allow: true, type: 'c', major: 136, access: 'rwm' });
  });

  it('gives fresh objects each time', () => {
    const a = defaultUnixSpec('n', 'a');
    a.process?.capabilities?.bounding?.pop();
    assert.equal(defaultUnixSpec('n', 'b').process?.capabilities?.bounding?.length, 14);
  });
});

describe('image config and options', () => {
  it('takes entrypoint, cmd, env and working dir from the image; args replace cmd', async () => {
    const image = { Entrypoint: ['/entry'], Cmd: ['a', 'b'], Env: ['PATH=/bin', 'X=1'], WorkingDir: '/work' };
    let s = await generateContainerSpec({ namespace: 'n', id: 'c', image });
    assert.deepEqual(s.process?.args, ['/entry', 'a', 'b']);
    assert.deepEqual(s.process?.env, ['PATH=/bin', 'X=1']);
    assert.equal(s.process?.cwd, '/work');
    s = await generateContainerSpec({ namespace: 'n', id: 'c', image, args: ['sh', '-c', 'true'], env: ['X=2', 'Y=3', 'PATH'] });
    // ctr's WithProcessArgs replaces all of args, entrypoint included.
    assert.deepEqual(s.process?.args, ['sh', '-c', 'true']);
    // Our env goes in before the image's is merged under it: a bare PATH removes nothing of the image's.
    assert.deepEqual(s.process?.env, ['PATH=/bin', 'X=2', 'Y=3']);
  });

  it('defaults PATH when the image sets no environment, and sets TERM with a terminal', async () => {
    const s = await generateContainerSpec({ namespace: 'n', id: 'c', image: { Cmd: ['/bin/sh'] }, tty: true });
    assert.deepEqual(s.process?.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm']);
    assert.equal(s.process?.terminal, true);
  });

  it('replaces, appends and removes environment entries as containerd', () => {
    assert.deepEqual(replaceOrAppendEnv(['A=1', 'B=2', 'C=3'], ['B=x', 'D=4', 'A', 'E']), ['B=x', 'C=3', 'D=4']);
  });

  it('sets resources, mounts, host network, annotations and capabilities', async () => {
    const s = await generateContainerSpec({
      namespace: 'n',
      id: 'c',
      mounts: [parseMountFlag('type=bind,src=/tmp,dst=/host,options=rbind:ro')],
      memoryLimit: 20_000_000,
      cpus: 0.5,
      cpuShares: 1024,
      netHost: true,
      annotations: { a: 'b' },
      capAdd: ['CAP_SYS_ADMIN'],
      capDrop: ['CAP_KILL'],
      readonlyRootfs: true,
    });
    assert.deepEqual(s.linux?.resources?.memory, { limit: 20_000_000 });
    assert.deepEqual(s.linux?.resources?.cpu, { quota: 50_000, period: 100_000, shares: 1024 });
    assert.ok(!s.linux?.namespaces?.some((n) => n.type === 'network'));
    assert.deepEqual(
      s.mounts?.slice(7),
      [
        { destination: '/host', type: 'bind', source: '/tmp', options: ['rbind', 'ro'] },
        { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
        { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
      ],
    );
    assert.ok(s.process?.env?.some((e) => e.startsWith('HOSTNAME=')));
    assert.deepEqual(s.annotations, { a: 'b' });
    assert.ok(s.process?.capabilities?.bounding?.includes('CAP_SYS_ADMIN'));
    assert.ok(!s.process?.capabilities?.effective?.includes('CAP_KILL'));
    assert.equal(s.root?.readonly, true);
    await assert.rejects(generateContainerSpec({ namespace: 'n', id: 'c', capAdd: ['SYS_ADMIN'] }), /'CAP_' prefix/);
  });

  it('round-trips through the Any a container carries, in Go field order', async () => {
    const s = await generateContainerSpec({ namespace: 'n', id: 'c', image: { Cmd: ['x'] }, tty: true });
    const any = specToAny(s);
    assert.equal(any.typeUrl, SpecTypeUrl.spec);
    assert.deepEqual(specFromAny(any), s);
    const json = Buffer.from(any.value).toString('utf8');
    assert.ok(json.startsWith('{"ociVersion":"1.0.2-dev","process":{"terminal":true,"user":'), json.slice(0, 80));
    assert.throws(() => specFromAny({ typeUrl: 'x', value: new Uint8Array() }), /type x/);
  });
});

describe('ctr --mount', () => {
  it('parses key=value fields, CSV quoting and colon-separated options', () => {
    assert.deepEqual(parseMountFlag('type=bind,src=/a,dst=/b,options=rbind:ro'), {
      destination: '/b',
      type: 'bind',
      source: '/a',
      options: ['rbind', 'ro'],
    });
    assert.deepEqual(parseMountFlag('type=tmpfs,destination=/t,source=tmpfs'), { destination: '/t', type: 'tmpfs', source: 'tmpfs' });
    assert.deepEqual(parseMountFlag('"src=/with,comma",dst=/x').source, '/with,comma');
    assert.throws(() => parseMountFlag('type=bind,src=/a'), /absolute/);
    assert.throws(() => parseMountFlag('type=bind,bogus=1,dst=/a'), /not supported/);
    assert.throws(() => parseMountFlag('bind'), /key=val/);
  });
});

describe('users as containerd resolves them', () => {
  it('parses passwd and group as runc does', () => {
    assert.deepEqual(parsePasswd(PASSWD)[2], { name: 'app', uid: 1000, gid: 1001, home: '/home/app', shell: '/bin/sh' });
    assert.deepEqual(parseGroup(GROUP)[3], { name: 'wheel', gid: 10, members: ['app', 'other'] });
  });

  it('resolves names, numbers and pairs from the rootfs, with supplementary groups from the image config', async () => {
    const root = rootfsFromDirectory(rootfs('users', { 'etc/passwd': PASSWD, 'etc/group': GROUP }));
    const user = async (u: string) => {
      const s = defaultUnixSpec('n', 'c');
      await applyUser(s, u, root);
      return s.process?.user;
    };
    assert.deepEqual(await user('app'), { uid: 1000, gid: 1001, additionalGids: [1001] });
    assert.deepEqual(await user('1000'), { uid: 1000, gid: 1001, additionalGids: [1001] });
    assert.deepEqual(await user('4242'), { uid: 4242, gid: 0, additionalGids: [0] });
    assert.deepEqual(await user('app:wheel'), { uid: 1000, gid: 10, additionalGids: [10] });
    assert.deepEqual(await user('5:6'), { uid: 5, gid: 6, additionalGids: [6] });
    await assert.rejects(user('ghost'), /unable to find user ghost/);
    await assert.rejects(user('app:ghosts'), /unable to find group ghosts/);
    await assert.rejects(user('a:b:c'), /invalid USER/);

    const s = await generateContainerSpec({ namespace: 'n', id: 'c', image: { User: 'app', Cmd: ['x'] }, rootfs: root });
    assert.deepEqual(s.process?.user, { uid: 1000, gid: 1001, additionalGids: [1001, 10, 29] });
    const r = await generateContainerSpec({ namespace: 'n', id: 'c', image: { Cmd: ['x'] }, rootfs: root });
    assert.deepEqual(r.process?.user, { uid: 0, gid: 0, additionalGids: [0] });
  });

  it('needs a readable rootfs for names, not for numbers', async () => {
    const s = defaultUnixSpec('n', 'c');
    await applyUser(s, '123', undefined);
    assert.deepEqual(s.process?.user, { uid: 123, gid: 0, additionalGids: [0] });
    await assert.rejects(applyUser(s, 'app', undefined), /cannot be read/);
  });

  it('reads through overlay layers: upper first, whiteouts hide, symlinks stay inside', async () => {
    const lower = rootfs('lower', { 'etc/passwd': PASSWD, 'etc/group': GROUP, 'etc/real-group': 'real:x:77:\n' });
    const upper = rootfs('upper', { 'etc/passwd': 'root:x:0:0::/:/bin/sh\nzed:x:7:7::/:/bin/sh\n' });
    // etc/group → real-group, an absolute link that must resolve in the rootfs, not on this host.
    symlinkSync('/etc/real-group', join(upper, 'etc/group'));
    const files = rootfsFromMounts([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lower}`, `upperdir=${upper}`, 'workdir=/w'] }]);
    assert.ok(files);
    assert.match((await files.read('/etc/passwd'))?.toString() ?? '', /zed/);
    assert.equal((await files.read('/etc/group'))?.toString(), 'real:x:77:\n');
    assert.equal(await files.read('/etc/none'), undefined);
    // A whiteout (character device 0/0) in the upper layer deletes the lower file.
    let whiteout = false;
    try {
      execFileSync('mknod', [join(upper, 'etc/real-group-wh'), 'c', '0', '0']);
      execFileSync('mv', [join(upper, 'etc/real-group-wh'), join(upper, 'etc/real-group')]);
      whiteout = true;
    } catch {
      // mknod needs CAP_MKNOD; the rest of the test stands without it.
    }
    if (whiteout) assert.equal(await files.read('/etc/group'), undefined);
    const bind = rootfsFromMounts([{ type: 'bind', source: lower, options: ['rbind', 'rw'] }]);
    assert.match((await bind?.read('/etc/passwd'))?.toString() ?? '', /nobody/);
    assert.equal(rootfsFromMounts([{ type: 'ext4', source: '/dev/sda', options: [] }]), undefined);
  });
});

describe('chain IDs', () => {
  it('follows the OCI definition', () => {
    const a = 'sha256:aaaa';
    const b = 'sha256:bbbb';
    assert.equal(chainId([]), '');
    assert.equal(chainId([a]), a);
    assert.equal(chainId([a, b]), `sha256:${createHash('sha256').update(`${a} ${b}`).digest('hex')}`);
  });
});
