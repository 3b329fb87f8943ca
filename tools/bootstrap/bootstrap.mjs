#!/usr/bin/env node
// berth bootstrap: what `npm start` and `npm test` run.
//
// Plain Node ESM with no npm dependencies: it runs before `npm ci`.
//
//   node tools/bootstrap/bootstrap.mjs --check              steps a-c, then exit 0
//   node tools/bootstrap/bootstrap.mjs --run-daemon [args]  steps a-c, then the daemon with [args]
//   node tools/bootstrap/bootstrap.mjs --run-tests [args]   steps a-c, then `nx run-many -t lint,test [args]`
//
// Steps, each skipped quickly when already satisfied:
//   a. Debian packages the engine and the tests need (installed with apt-get when root).
//   b. npm packages (`npm ci`, or `npm install` when the lock file must change).
//   c. the build (`nx run-many -t build`) when sources changed since the last good build.
//
// Environment:
//   BERTH_SKIP_APT=1   skip step a (e.g. on a machine that is not Debian).
//   CI=true            never rewrite package-lock.json: always `npm ci`.

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const t0 = performance.now();
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NM = path.join(ROOT, 'node_modules');
const BUILD_STAMP = path.join(NM, '.cache', 'berth-build-stamp');
const INSTALL_STAMP = path.join(NM, '.cache', 'berth-install-stamp');
const IS_CI = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

const DEBIAN_PACKAGES = [
  'containerd', // containerd, ctr, containerd-shim-runc-v2
  'runc',
  'crun',
  'umoci',
  'skopeo',
  'busybox-static',
  'docker-registry',
  'apache2-utils', // htpasswd, for registry basic-auth tests
  'golang-github-containerd-containerd-dev',
];

// ---------------------------------------------------------------- helpers

const log = (msg) => process.stderr.write(`bootstrap: ${msg}\n`);
const secs = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`);

class Exit extends Error {
  constructor(code, message) {
    super(message ?? `exit ${code}`);
    this.code = code;
  }
}
const fail = (code, msg) => {
  throw new Exit(code, msg);
};

function statOrNull(p) {
  try {
    return fs.statSync(p);
  } catch {
    return null;
  }
}

function readJson(p) {
  return JSON.parse(fs.readFileSync(p, 'utf8'));
}

function signalExitCode(signal) {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/**
 * Runs a setup command in the foreground (same process group, so a Ctrl-C at the
 * terminal reaches it directly). While it runs, SIGINT/SIGTERM/SIGHUP do not kill this
 * process: they are passed on (SIGTERM, SIGHUP) or left to the terminal (SIGINT), and we
 * wait for the child so that cleanup (`finally`) still happens. Resolves with the exit code.
 * The child's stdout goes to our stderr so that stdout stays for the daemon / the tests.
 */
function runStep(cmd, args, { env = process.env, cwd = ROOT, stdout = 2 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', stdout, 2] });
    let interrupted = null;
    const onSignal = (sig) => {
      interrupted ??= sig;
      if (sig !== 'SIGINT') child.kill(sig === 'SIGHUP' ? 'SIGTERM' : sig);
      else if (!process.stdin.isTTY) child.kill('SIGINT'); // not from a terminal: pass it on
    };
    const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const s of sigs) process.on(s, onSignal);
    const done = (code) => {
      for (const s of sigs) process.off(s, onSignal);
      resolve(code);
    };
    child.on('error', (err) => {
      log(`cannot run ${cmd}: ${err.message}`);
      done(127);
    });
    child.on('exit', (code, signal) => {
      if (interrupted) return done(signalExitCode(interrupted));
      done(code ?? signalExitCode(signal));
    });
  });
}

/**
 * Runs the final command (daemon or test runner) in its own process group and forwards
 * SIGINT/SIGTERM (SIGHUP as SIGTERM) to it exactly once per burst: a Ctrl-C reaches us both
 * from the terminal and from npm, and the child must see one signal, not two. A signal
 * repeated later than DEDUPE_MS is forwarded again (a deliberate second Ctrl-C). The child
 * also gets SIGTERM when our parent process goes away (see below).
 * Resolves with the child's exit code, or 128+signal.
 */
function runForwarding(cmd, args, env = process.env) {
  const DEDUPE_MS = 400;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env, stdio: 'inherit', detached: true });
    const last = new Map();
    const forward = (sig) => {
      const as = sig === 'SIGHUP' ? 'SIGTERM' : sig;
      const now = Date.now();
      if (now - (last.get(as) ?? -Infinity) < DEDUPE_MS) return;
      last.set(as, now);
      try {
        process.kill(-child.pid, as); // the whole group: the child and what it started
      } catch {
        child.kill(as);
      }
    };
    const sigs = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const s of sigs) process.on(s, forward);
    // npm answers SIGTERM by killing its `sh -c` and exiting without waiting; the shell does
    // not pass the signal on. So when our parent goes away, stop the child as if told to.
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid !== parent) {
        clearInterval(watch);
        forward('SIGTERM');
      }
    }, 250);
    watch.unref();
    // If we die for another reason, do not leave the child behind.
    const onExit = () => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {}
      }
    };
    process.on('exit', onExit);
    child.on('error', (err) => {
      log(`cannot run ${cmd}: ${err.message}`);
      resolve(127);
    });
    child.on('exit', (code, signal) => {
      clearInterval(watch);
      for (const s of sigs) process.off(s, forward);
      process.off('exit', onExit);
      resolve(code ?? signalExitCode(signal));
    });
  });
}

/** Expands npm "workspaces" patterns (plain paths and `*` segments) to directories. */
function workspaceDirs(patterns) {
  const out = new Set();
  for (const pattern of patterns) {
    let dirs = [''];
    for (const seg of pattern.split('/').filter((s) => s && s !== '.')) {
      const next = [];
      for (const d of dirs) {
        if (!seg.includes('*')) {
          if (statOrNull(path.join(ROOT, d, seg))?.isDirectory()) next.push(path.posix.join(d, seg));
          continue;
        }
        const re = new RegExp(`^${seg.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
        let entries = [];
        try {
          entries = fs.readdirSync(path.join(ROOT, d), { withFileTypes: true });
        } catch {}
        for (const e of entries) {
          if (e.isDirectory() && e.name !== 'node_modules' && !e.name.startsWith('.') && re.test(e.name)) {
            next.push(path.posix.join(d, e.name));
          }
        }
      }
      dirs = next;
    }
    for (const d of dirs) if (d) out.add(d);
  }
  return [...out].sort();
}

/** The workspaces (directories with a package.json), with their manifests. */
function workspaces(rootPkg) {
  const list = [];
  for (const dir of workspaceDirs(rootPkg.workspaces ?? [])) {
    const pj = path.join(ROOT, dir, 'package.json');
    if (!fs.existsSync(pj)) continue;
    try {
      list.push({ dir, pkg: readJson(pj) });
    } catch (err) {
      fail(1, `${dir}/package.json: ${err.message}`);
    }
  }
  return list;
}

// ---------------------------------------------------------------- a. Debian packages

function missingDebianPackages() {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a dpkg-query format, not a template
  const format = '-f=${Package} ${db:Status-Abbrev}\n';
  const r = spawnSync('dpkg-query', ['-W', format, ...DEBIAN_PACKAGES], { encoding: 'utf8' });
  if (r.error) return null; // no dpkg: not Debian
  const installed = new Set();
  for (const line of r.stdout.split('\n')) {
    const [name, status] = line.trim().split(/\s+/);
    if (name && status === 'ii') installed.add(name.split(':')[0]);
  }
  return DEBIAN_PACKAGES.filter((p) => !installed.has(p));
}

function serviceProcesses() {
  // pids of containerd / registry processes, to notice one an install started.
  const found = new Set();
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'containerd' || comm === 'docker-registry' || comm === 'registry') found.add(`${comm}[${pid}]`);
    } catch {}
  }
  return found;
}

async function ensureDebianPackages(actions) {
  if (process.env.BERTH_SKIP_APT === '1') return;
  const missing = missingDebianPackages();
  if (missing === null) {
    log('dpkg-query not found (not Debian?): not checking system packages');
    return;
  }
  if (missing.length === 0) return;

  const installCmd = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    log(`missing Debian packages: ${missing.join(' ')}`);
    log(`as root, run:  ${installCmd}`);
    fail(2);
  }

  const t = performance.now();
  log(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const aptOpts = ['-o', 'DPkg::Lock::Timeout=300', '-o', 'Acquire::Retries=3'];

  // Forbid service starts during the install: containerd and docker-registry are services
  // that their postinst would start. Only remove the policy file if we created it.
  const policy = '/usr/sbin/policy-rc.d';
  let createdPolicy = false;
  const before = serviceProcesses();
  try {
    if (!fs.existsSync(policy)) {
      fs.writeFileSync(policy, '#!/bin/sh\n# written by berth bootstrap during apt-get install\nexit 101\n', {
        mode: 0o755,
        flag: 'wx',
      });
      createdPolicy = true;
    }
    let code = await runStep('apt-get', [...aptOpts, 'update'], { env });
    if (code !== 0) fail(code, `apt-get update failed (exit ${code})`);
    code = await runStep(
      'apt-get',
      [
        ...aptOpts,
        '-o',
        'Dpkg::Options::=--force-confdef',
        '-o',
        'Dpkg::Options::=--force-confold',
        'install',
        '-y',
        '--no-install-recommends',
        ...missing,
      ],
      { env },
    );
    if (code !== 0) fail(code, `apt-get install failed (exit ${code})`);
  } finally {
    if (createdPolicy) fs.rmSync(policy, { force: true });
  }
  const stillMissing = missingDebianPackages() ?? [];
  if (stillMissing.length) fail(1, `still missing after apt-get install: ${stillMissing.join(' ')}`);
  const started = [...serviceProcesses()].filter((p) => !before.has(p));
  if (started.length) log(`warning: the install started ${started.join(', ')} (left running, not ours to stop)`);
  actions.push(`apt-get install ${missing.join(' ')} (${secs(performance.now() - t)})`);
}

// ---------------------------------------------------------------- b. npm packages

const DEP_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies'];

function sameDeps(manifest, locked) {
  for (const f of DEP_FIELDS) {
    const a = manifest?.[f] ?? {};
    const b = locked?.[f] ?? {};
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    for (const k of ka) if (a[k] !== b[k]) return false;
  }
  return true;
}

/**
 * Why npm must run, or null. `kind` is 'ci' when node_modules must be (re)made from the lock,
 * 'install' when the lock itself is out of date with the manifests (or links are missing).
 */
function npmInstallReason(rootPkg, wss) {
  const lockPath = path.join(ROOT, 'package-lock.json');
  const lockStat = statOrNull(lockPath);
  if (!lockStat) return { kind: 'install', why: 'no package-lock.json' };

  let lock;
  try {
    lock = readJson(lockPath);
  } catch (err) {
    fail(1, `package-lock.json: ${err.message}`);
  }
  const pkgs = lock.packages ?? {};

  // Manifests vs the lock (what `npm ci` would refuse).
  let stale = null;
  if (!sameDeps(rootPkg, pkgs[''])) stale = 'package.json';
  const wsDirs = new Set(wss.map((w) => w.dir));
  for (const w of wss) {
    if (stale) break;
    const entry = pkgs[w.dir];
    const link = pkgs[`node_modules/${w.pkg.name}`];
    if (!entry || !link || link.resolved !== w.dir || !sameDeps(w.pkg, entry)) stale = `${w.dir}/package.json`;
  }
  if (!stale) {
    for (const key of Object.keys(pkgs)) {
      if (key && !key.includes('node_modules/') && !wsDirs.has(key)) {
        stale = `${key} (workspace gone)`;
        break;
      }
    }
  }
  if (stale) return { kind: 'install', why: `package-lock.json out of date with ${stale}` };

  const hidden = statOrNull(path.join(NM, '.package-lock.json'));
  if (!statOrNull(NM)) return { kind: 'ci', why: 'no node_modules' };
  if (!hidden) return { kind: 'ci', why: 'node_modules incomplete' };
  if (lockStat.mtimeMs > hidden.mtimeMs) {
    const stamp = statOrNull(INSTALL_STAMP);
    if (!stamp || lockStat.mtimeMs > stamp.mtimeMs) return { kind: 'ci', why: 'package-lock.json changed' };
  }
  for (const w of wss) {
    if (!fs.existsSync(path.join(NM, w.pkg.name))) return { kind: 'install', why: `${w.pkg.name} not linked` };
  }
  return null;
}

async function ensureNpmPackages(actions) {
  const rootPkg = readJson(path.join(ROOT, 'package.json'));
  const wss = workspaces(rootPkg);
  const reason = npmInstallReason(rootPkg, wss);
  if (!reason) return;

  const hasLock = fs.existsSync(path.join(ROOT, 'package-lock.json'));
  // In CI the lock is the truth: `npm ci` fails loudly if it is out of date.
  const sub = IS_CI && hasLock ? 'ci' : reason.kind === 'ci' && hasLock ? 'ci' : 'install';
  const t = performance.now();
  log(`npm ${sub} (${reason.why})`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const code = await runStep(npm, [sub, '--include=dev', '--no-audit', '--no-fund']);
  if (code !== 0) {
    if (sub === 'ci' && reason.kind === 'install') {
      log('package-lock.json does not match the package.json files: run `npm install` and commit the lock file');
    }
    fail(code, `npm ${sub} failed (exit ${code})`);
  }
  // Native modules ship prebuilt binaries (npm 11 skips unapproved install scripts): check one loads.
  const r = spawnSync(process.execPath, ['-e', "require('classic-level')"], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    fail(1, "require('classic-level') fails after npm install");
  }
  fs.mkdirSync(path.dirname(INSTALL_STAMP), { recursive: true });
  fs.writeFileSync(INSTALL_STAMP, `${new Date().toISOString()}\n`);
  actions.push(`npm ${sub} (${secs(performance.now() - t)})`);
}

// ---------------------------------------------------------------- c. build

const SKIP_DIRS = new Set(['node_modules', 'dist', '.nx', 'coverage', '.git']);

/** Fingerprint of the build inputs: every relevant file's path, mtime and size. */
function buildFingerprint(rootPkg) {
  const lines = [];
  const add = (abs) => {
    const st = statOrNull(abs);
    if (st?.isFile()) lines.push(`${path.relative(ROOT, abs)}\0${st.mtimeMs}\0${st.size}`);
  };
  const walk = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (SKIP_DIRS.has(e.name)) continue;
      const abs = path.join(dir, e.name);
      if (e.isDirectory()) walk(abs);
      else if (e.isFile() || e.isSymbolicLink()) add(abs);
    }
  };
  const tsconfigs = (dir) => {
    let names = [];
    try {
      names = fs.readdirSync(dir);
    } catch {}
    for (const n of names) if (/^tsconfig.*\.json$/.test(n)) add(path.join(dir, n));
  };

  add(path.join(ROOT, 'package.json'));
  add(path.join(NM, '.package-lock.json')); // dependencies changed: rebuild
  tsconfigs(ROOT);
  for (const dir of workspaceDirs(rootPkg.workspaces ?? [])) {
    const abs = path.join(ROOT, dir);
    add(path.join(abs, 'package.json'));
    tsconfigs(abs);
    walk(path.join(abs, 'src'));
    walk(path.join(abs, 'scripts')); // build steps after tsc (the shim's start-up snapshot)
  }
  walk(path.join(ROOT, 'proto'));
  lines.sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

function nxEnv() {
  const env = { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true' };
  delete env.NX_SKIP_NX_CACHE;
  return env;
}

function nxCommand(args) {
  const bin = path.join(NM, 'nx', 'bin', 'nx.js');
  if (fs.existsSync(bin)) return [process.execPath, [bin, ...args]];
  return [process.platform === 'win32' ? 'npx.cmd' : 'npx', ['nx', ...args]];
}

async function ensureBuild(actions) {
  const rootPkg = readJson(path.join(ROOT, 'package.json'));
  const wss = workspaces(rootPkg);
  const fingerprint = buildFingerprint(rootPkg);
  let why = null;
  let previous = null;
  try {
    previous = fs.readFileSync(BUILD_STAMP, 'utf8').trim();
  } catch {}
  if (previous === null) why = 'no previous build';
  else if (previous !== fingerprint) why = 'sources changed';
  else {
    const unbuilt = wss.find((w) => w.pkg.scripts?.build && !fs.existsSync(path.join(ROOT, w.dir, 'dist')));
    if (unbuilt) why = `${unbuilt.dir}/dist missing`;
  }
  if (!why) return;

  const t = performance.now();
  log(`build (${why})`);
  const [cmd, args] = nxCommand(['run-many', '-t', 'build', '--output-style=stream']);
  const code = await runStep(cmd, args, { env: nxEnv() });
  if (code !== 0) fail(code, `build failed (exit ${code})`);
  fs.mkdirSync(path.dirname(BUILD_STAMP), { recursive: true });
  fs.writeFileSync(BUILD_STAMP, `${fingerprint}\n`); // the inputs as they were before the build
  actions.push(`build (${secs(performance.now() - t)})`);
}

/**
 * npm links a workspace's `bin` only if the file exists at install time, and
 * on a fresh checkout dist/ is built after `npm ci`: link what is missing
 * (containerd-shim-berth-v1, berth, berthd) so PATH lookups through
 * node_modules/.bin find them.
 */
function ensureBinLinks(actions) {
  const rootPkg = readJson(path.join(ROOT, 'package.json'));
  const binDir = path.join(NM, '.bin');
  const linked = [];
  for (const { dir, pkg } of workspaces(rootPkg)) {
    const bins = typeof pkg.bin === 'string' ? { [pkg.name.split('/').pop()]: pkg.bin } : (pkg.bin ?? {});
    for (const [name, rel] of Object.entries(bins)) {
      const link = path.join(binDir, name);
      const target = path.join(ROOT, dir, rel);
      if (statOrNull(link) || !fs.existsSync(target)) continue;
      fs.mkdirSync(binDir, { recursive: true });
      fs.symlinkSync(path.relative(binDir, target), link);
      fs.chmodSync(target, 0o755);
      linked.push(name);
    }
  }
  if (linked.length) actions.push(`linked ${linked.join(', ')}`);
}

// ---------------------------------------------------------------- main

const USAGE = `usage: node tools/bootstrap/bootstrap.mjs (--check | --run-daemon [daemon args…] | --run-tests [nx args…])
  --check       install what is missing and build, then exit 0
  --run-daemon  … then run node packages/daemon/dist/main.js with the remaining arguments
  --run-tests   … then run nx run-many -t lint,test --output-style=stream with the remaining arguments
env: BERTH_SKIP_APT=1 skips the Debian package check; CI=true always uses npm ci`;

async function main(argv) {
  const mode = argv[0];
  const rest = argv.slice(1);
  if (mode === '--help' || mode === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!['--check', '--run-daemon', '--run-tests'].includes(mode)) {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }
  if (mode === '--check' && rest.length) {
    process.stderr.write(`${USAGE}\n`);
    return 64;
  }

  const actions = [];
  await ensureDebianPackages(actions);
  await ensureNpmPackages(actions);
  await ensureBuild(actions);
  ensureBinLinks(actions);
  const total = secs(performance.now() - t0);
  log(actions.length ? `ready in ${total}: ${actions.join(', ')}` : `ready in ${total} (nothing to do)`);

  if (mode === '--check') return 0;

  if (mode === '--run-daemon') {
    const main = path.join(ROOT, 'packages', 'daemon', 'dist', 'main.js');
    if (!fs.existsSync(main)) fail(1, 'packages/daemon/dist/main.js not found: does @berth/daemon build?');
    // berthd's V8 settings, as its bin's shebang gives them.
    const { BERTHD_NODE_FLAGS } = await import(pathToFileURL(path.join(ROOT, 'packages', 'daemon', 'dist', 'node-flags.js')).href);
    return runForwarding(process.execPath, [...BERTHD_NODE_FLAGS, main, ...rest]);
  }

  const [cmd, args] = nxCommand(['run-many', '-t', 'lint,test', '--output-style=stream', ...rest]);
  // Each package's tests also write their failures here (tools/run-tests.mjs), so that the
  // end of a long, interleaved run repeats which tests failed and why.
  const failuresDir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-test-failures-'));
  try {
    const code = await runForwarding(cmd, args, { ...nxEnv(), BERTH_TEST_FAILURES_DIR: failuresDir });
    const failed = fs
      .readdirSync(failuresDir)
      .sort()
      .map((f) => fs.readFileSync(path.join(failuresDir, f), 'utf8'))
      .filter((text) => text.trim() !== '');
    if (failed.length > 0) process.stderr.write(`\n==== failed tests ====\n\n${failed.join('')}`);
    return code;
  } finally {
    fs.rmSync(failuresDir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof Exit) {
      if (err.message !== `exit ${err.code}`) log(err.message);
      process.exitCode = err.code;
    } else {
      log(err?.stack ?? String(err));
      process.exitCode = 1;
    }
  },
);
